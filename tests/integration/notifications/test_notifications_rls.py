"""What a member can do to notification rows directly through the Supabase
API (as `authenticated`, under RLS), beyond the table-wide matrix in
tests/integration/test_rls_matrix.py: mark their own notifications read and
nothing else."""

from __future__ import annotations

import json

import psycopg
import pytest


@pytest.fixture
def as_member(database_url):
    conn = psycopg.connect(database_url)

    def run(member_id: str, statement: str, params: tuple = ()) -> tuple[int, str | None]:
        try:
            with conn.transaction(force_rollback=True):
                conn.execute("SET LOCAL ROLE authenticated")
                conn.execute("SELECT set_config('request.jwt.claims', %s, true)",
                             (json.dumps({"sub": member_id, "role": "authenticated"}),))
                return conn.execute(statement, params).rowcount, None
        except psycopg.Error as e:
            return 0, e.sqlstate

    yield run
    conn.close()


def test_a_member_marks_their_own_notification_read_and_changes_nothing_else(sql, as_member):
    owner, other = sql.member("scout"), sql.member("scout")
    nid = sql.one("INSERT INTO public.notification_queue (recipient_id, type, title) VALUES (%s, 'X', 'Original') "
                  "RETURNING id", (owner.id,))

    assert as_member(owner.id, "UPDATE public.notification_queue SET read_at = now() WHERE id = %s", (nid,)) == (1, None)
    assert as_member(other.id, "UPDATE public.notification_queue SET read_at = now() WHERE id = %s", (nid,)) == (0, None)
    for column in ("title = 'Changed'", "sent_at = now()", "recipient_id = %s"):
        params = (other.id, nid) if "%s" in column else (nid,)
        assert as_member(owner.id, f"UPDATE public.notification_queue SET {column} WHERE id = %s", params)[1] == "42501"
    assert as_member(other.id, "SELECT 1 FROM public.notification_queue WHERE id = %s", (nid,)) == (0, None)
    assert as_member(owner.id, "SELECT 1 FROM public.notification_queue WHERE id = %s", (nid,)) == (1, None)


def test_a_member_cannot_create_a_subscription_or_call_the_functions_directly(sql, as_member):
    member = sql.member("scout")
    insert = as_member(member.id, "INSERT INTO public.push_subscriptions (user_id, endpoint, p256dh, auth) "
                                  "VALUES (%s, 'https://10.0.0.1/x', %s, %s)", (member.id, "B" * 87, "a" * 22))
    assert insert[1] == "42501"
    for call in ("SELECT public.launch_rescue_flare(%s, 'MEDICAL', 'x', 60)",
                 "SELECT public.push_subscription_upsert(%s, 'https://a.example/x', 'p', 'a', 5)",
                 "SELECT public.push_claim_deliveries(10, 60, 8)"):
        params = (member.id,) if "%s" in call else ()
        assert as_member(member.id, call, params)[1] == "42501", call
