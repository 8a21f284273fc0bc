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
