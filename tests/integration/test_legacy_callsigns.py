"""Callsigns written before the text rules (20251216) stay as they are (the
rule applies when a callsign is set or changed): the member can still be
promoted or brigged, and the pushes that name them do not carry the
characters the rules refuse."""

from __future__ import annotations

import json
import uuid

import psycopg
import pytest

from nexus import migrate
from tests.integration.test_guests import lived_in as legacy  # noqa: F401 (a fixture)

# A zero-width joiner (emoji sequences such as 👩‍🚀 carry one) and a bidi override:
# both were allowed before 20251216, and both are refused since.
LEGACY = ["Astro\u200dNaut", "Ace \u202eeci"]


def _user(conn, callsign: str | None = None, rank: str = "scout", roles: tuple[str, ...] = ()) -> str:
    uid = str(uuid.uuid4())
    conn.execute("INSERT INTO auth.users (id, raw_user_meta_data) VALUES (%s, %s::jsonb)",
                 (uid, json.dumps({"callsign": callsign} if callsign else {})))
    conn.execute("UPDATE public.profiles SET rank = %s, roles = %s WHERE id = %s", (rank, list(roles), uid))
    return uid


@pytest.mark.parametrize("callsign", LEGACY, ids=repr)
def test_a_member_with_a_legacy_callsign_can_still_be_brigged_and_promoted(legacy, callsign):
    with psycopg.connect(legacy, autocommit=True) as conn:
        member = _user(conn, callsign)
        assert conn.execute("SELECT callsign FROM public.profiles WHERE id = %s", (member,)).fetchone()[0] == callsign
        migrate.migrate(legacy, log=lambda *_: None)

        conn.execute("UPDATE public.profiles SET roles = array_append(roles, 'brigged') WHERE id = %s", (member,))
        conn.execute("UPDATE public.profiles SET rank = 'voyager' WHERE id = %s", (member,))
        assert conn.execute("SELECT rank, roles, callsign FROM public.profiles WHERE id = %s",
                            (member,)).fetchone() == ("voyager", ["brigged"], callsign)
        # Setting or changing a callsign is under the rules as before.
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute("UPDATE public.profiles SET callsign = %s WHERE id = %s", (callsign + " 2", member))
        conn.execute("UPDATE public.profiles SET callsign = 'Astronaut' WHERE id = %s", (member,))
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute("UPDATE public.profiles SET callsign = %s WHERE id = %s", (callsign, member))


@pytest.mark.parametrize("callsign", LEGACY, ids=repr)
def test_pushes_do_not_carry_a_legacy_callsign_the_rules_refuse(legacy, callsign):
    with psycopg.connect(legacy, autocommit=True) as conn:
        sender = _user(conn, callsign)
        responder = _user(conn, roles=("rescue",))
        migrate.migrate(legacy, log=lambda *_: None)

        flare = conn.execute("SELECT public.launch_rescue_flare(%s, 'MEDICAL', 'Stanton', 60)", (sender,)).fetchone()[0]
        assert flare["respondersQueued"] == 1, flare

        skill = conn.execute("INSERT INTO public.skills (name) VALUES ('Mining') RETURNING id").fetchone()[0]
        cadet = _user(conn, f"Cadet {uuid.uuid4().hex[:6]}")
        conn.execute("INSERT INTO public.certifications (user_id, skill_id) VALUES (%s, %s)", (sender, skill))
        asked = conn.execute("SELECT public.academy_request_create(%s, %s, 86400)", (cadet, skill)).fetchone()[0]
        accepted = conn.execute("SELECT public.academy_accept(%s, %s, 3600, 86400)",
                                (sender, asked["requestId"])).fetchone()[0]
        assert "error" not in accepted, accepted

        rows = conn.execute("SELECT type, title, message, payload::text FROM public.notification_queue "
                            "WHERE recipient_id IN (%s, %s) ORDER BY type", (responder, cadet)).fetchall()
        assert [r[0] for r in rows] == ["ACADEMY_ACCEPTED", "RESCUE_FLARE"]
        for row in rows:
            assert not any(ch in text for text in row[1:] for ch in "\u200d\u202e"), row
        assert rows[0][2].startswith("A guide accepted") and rows[1][2].startswith("A member needs"), rows


# Before 20251215 a callsign could hold a control character; that rule came NOT VALID, so such
# callsigns are still there. Two of them that collide must not stop the guests migration (its
# grandfathering UPDATE ran under the old rule and failed on them).
def test_colliding_callsigns_with_control_characters_from_before_any_rule_migrate(legacy):
    with psycopg.connect(legacy, autocommit=True) as conn:
        # What such a database holds: the 20251215 rule, NOT VALID, never checked these rows.
        conn.execute("ALTER TABLE public.profiles DROP CONSTRAINT profiles_callsign_printable")
        first, second = _user(conn), _user(conn)
        conn.execute("UPDATE public.profiles SET callsign = 'Ace\tOne' WHERE id = %s", (first,))
        conn.execute("UPDATE public.profiles SET callsign = 'ACE\tONE' WHERE id = %s", (second,))
        conn.execute("ALTER TABLE public.profiles ADD CONSTRAINT profiles_callsign_printable "
                     "CHECK (callsign IS NULL OR (callsign !~ '[[:cntrl:]]' AND btrim(callsign) <> '')) NOT VALID")

        migrate.migrate(legacy, log=lambda *_: None)

        rows = conn.execute("SELECT id::text, callsign, callsign_grandfathered FROM public.profiles "
                            "WHERE id IN (%s, %s)", (first, second)).fetchall()
        assert sorted(r[1:] for r in rows) == [("ACE\tONE", True), ("Ace\tOne", False)]
        conn.execute("UPDATE public.profiles SET rank = 'voyager' WHERE id IN (%s, %s)", (first, second))
