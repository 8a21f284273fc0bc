"""Guests (Supabase anonymous sign-ins) get no profile until they become full
accounts; and what the guests/callsigns migrations do to a database that
already has guests' profiles and colliding callsigns."""

from __future__ import annotations

import json
import uuid

import psycopg
import pytest

from nexus import migrate
from tests import support


def profile(sql, user_id: str):
    return sql.execute("SELECT callsign, rank FROM public.profiles WHERE id = %s", (user_id,))


def become_full_account(sql, user_id: str, callsign: str | None = None) -> None:
    """What Supabase Auth does when a guest links an email: the same user, is_anonymous now false."""
    meta = json.dumps({"callsign": callsign} if callsign else {})
    sql.execute("UPDATE auth.users SET email = %s, raw_user_meta_data = %s::jsonb, is_anonymous = false "
                "WHERE id = %s", (f"{user_id}@example.test", meta, user_id))


def test_a_guest_gets_no_profile(sql):
    assert profile(sql, sql.guest()) == []


def test_a_guest_who_becomes_a_full_account_gets_its_profile(sql):
    guest = sql.guest()
    callsign = f"Newcomer {uuid.uuid4().hex[:8]}"
    become_full_account(sql, guest, callsign)
    assert profile(sql, guest) == [(callsign, "vagrant")]


def test_a_guest_who_becomes_a_full_account_with_a_taken_callsign_gets_none(sql):
    held = f"Taken {uuid.uuid4().hex[:8]}"
    sql.member("scout", callsign=held)
    guest = sql.guest()
    become_full_account(sql, guest, held.lower())
    assert profile(sql, guest) == [(None, "vagrant")]


def test_other_updates_of_a_full_account_leave_its_profile_alone(sql):
    member = sql.member("founder", callsign=f"Chief {uuid.uuid4().hex[:8]}")
    before = profile(sql, member.id)
    sql.execute("UPDATE auth.users SET is_anonymous = false, raw_user_meta_data = '{}' WHERE id = %s", (member.id,))
    assert profile(sql, member.id) == before


# --- the migrations on a database that has lived before them --------------------

@pytest.fixture
def lived_in(pg):
    """A database migrated up to just before the guests migrations, with data."""
    with support.migrated_database(pg, "lived", before="20251216000000") as url:
        yield url


def _user(conn, callsign: str | None, *, guest: bool = False, created: str = "2025-01-01") -> str:
    uid = str(uuid.uuid4())
    conn.execute("INSERT INTO auth.users (id, is_anonymous, raw_user_meta_data) VALUES (%s, %s, %s::jsonb)",
                 (uid, guest, json.dumps({"callsign": callsign} if callsign else {})))
    conn.execute("UPDATE public.profiles SET created_at = %s WHERE id = %s", (created, uid))
    return uid


def test_migrating_keeps_colliding_callsigns_and_takes_guests_callsigns(lived_in):
    with psycopg.connect(lived_in, autocommit=True) as conn:
        first = _user(conn, "Ace", created="2025-01-01")
        copy = _user(conn, "ACE", created="2025-02-01")
        fullwidth = _user(conn, "Ａｃｅ", created="2025-03-01")
        guest = _user(conn, "Ace Squatter", guest=True)
        assert conn.execute("SELECT callsign FROM public.profiles WHERE id = %s", (guest,)).fetchone()[0] == "Ace Squatter"

        migrate.migrate(lived_in, log=lambda *_: None)

        rows = dict(conn.execute("SELECT id::text, callsign FROM public.profiles").fetchall())
        assert (rows[first], rows[copy], rows[fullwidth]) == ("Ace", "ACE", "Ａｃｅ")
        assert rows[guest] is None
        squatter = _user(conn, "ACE SQUATTER")
        assert conn.execute("SELECT callsign FROM public.profiles WHERE id = %s", (squatter,)).fetchone()[0] \
            == "ACE SQUATTER"
        # The callsign is still taken, by all three: a newcomer cannot have it...
        newcomer = _user(conn, "ace")
        assert conn.execute("SELECT callsign FROM public.profiles WHERE id = %s", (newcomer,)).fetchone()[0] is None
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute("UPDATE public.profiles SET callsign = 'aCe' WHERE id = %s", (newcomer,))
        # ...even after the first holder lets it go, since the others keep it.
        conn.execute("UPDATE public.profiles SET callsign = 'Ace Two' WHERE id = %s", (first,))
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute("UPDATE public.profiles SET callsign = 'aCe' WHERE id = %s", (newcomer,))
        # A holder that changes its callsign is under the rule like anyone.
        conn.execute("UPDATE public.profiles SET callsign = 'Deuce' WHERE id = %s", (copy,))
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute("UPDATE public.profiles SET callsign = 'ace' WHERE id = %s", (copy,))
