"""Roles are canonical wherever they are written (issue 25): `brigged`, `Medic`, `Rescue` in
those spellings, every other role trimmed, whoever writes them (member-admin, `nexus admin`,
SQL by the service role or the owner, an adoption). `brig` in any spelling is a brig in
livekit-token, voice_rights and member-admin, and a brigged founder loses the audit.

Real Postgres with the real migrations; member-admin's LiveKit is the Twirp fake
(tests/livekit_server/test_member_admin_live.py has the real server).
"""

from __future__ import annotations

import json
import uuid

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nexus import migrate
from shared.ranks import canonical_role, is_brigged
from tests import predecessor, support
from tests.integration.member_admin.conftest import jobs_for
from tests.support import Client

MY_FIRST_VERSION = "20251221000000"

# How SQL writers spell a brig: case, and whitespace around it (a space, a tab, a newline, a
# no-break space pasted from a web page).
BRIG_SPELLINGS = ["brig", "Brig", "BRIG", "brigged ", " Brigged", "\tbrig\n", "BRIGGED\u00a0", "\u3000brig"]


def write_roles(database_url: str, role: str, member_id: str, roles: list | None) -> None:
    """`UPDATE profiles SET roles = ...` as `role` ('service_role' or the owner 'postgres')."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        if role != "postgres":
            conn.execute(f"SET ROLE {role}")
        conn.execute("UPDATE public.profiles SET roles = %s WHERE id = %s", (roles, member_id))


def stored(sql, member_id: str) -> list[str]:
    return sql.one("SELECT roles FROM public.profiles WHERE id = %s", (member_id,))


# -- the trigger: every write is stored canonically ----------------------------------------------

@pytest.mark.parametrize("writer", ["service_role", "postgres"])
@pytest.mark.parametrize("spelling", BRIG_SPELLINGS, ids=repr)
def test_sql_writes_of_a_brig_are_stored_as_brigged(sql, database_url, writer, spelling):
    member = sql.member("scout")
    write_roles(database_url, writer, member.id, [spelling])
    assert stored(sql, member.id) == ["brigged"]


@pytest.mark.parametrize("written,canonical", [
    (["medic", "RESCUE"], ["Medic", "Rescue"]),
    ([" Medic ", "rescue\t"], ["Medic", "Rescue"]),
    (["  Pilot  ", "quarter master"], ["Pilot", "quarter master"]),   # others: trimmed, as written
    # NULL elements and blank names are no roles
    ([None, "Medic", None], ["Medic"]),
    (["", "   ", "\t\n", "Rescue"], ["Rescue"]),
    # one role once, in its first spelling, whatever the spellings it was written in
    (["brig", "Brigged", "brigged ", "BRIG"], ["brigged"]),
    (["medic", "Medic", "MEDIC "], ["Medic"]),
    (["pilot", "Pilot", " PILOT"], ["pilot"]),
    (["Pilot", "brig", "pilot", "medic", "Brigged"], ["Pilot", "brigged", "Medic"]),
    ([], []),
], ids=repr)
def test_sql_writes_are_stored_canonically(sql, database_url, written, canonical):
    member = sql.member("scout")
    write_roles(database_url, "service_role", member.id, written)
    assert stored(sql, member.id) == canonical


def test_roles_written_null_mean_no_roles(sql, database_url):
    member = sql.member("scout", ["Medic"])
    write_roles(database_url, "postgres", member.id, None)
    assert stored(sql, member.id) == []


def test_an_inserted_profile_is_stored_canonically(sql):
    uid = str(uuid.uuid4())
    sql.execute("INSERT INTO auth.users (id, email) VALUES (%s, %s)", (uid, f"{uid}@example.test"))
    sql.execute("DELETE FROM public.profiles WHERE id = %s", (uid,))
    sql.execute("INSERT INTO public.profiles (id, rank, roles) VALUES (%s, 'scout', %s)",
                (uid, [" brig", "medic", None, "Brigged"]))
    assert stored(sql, uid) == ["brigged", "Medic"]


# A role of any length keeps what it says (trimmed); only the surrounding whitespace goes, so a
# long name that merely starts with "brig" is not a brig, and a brig padded with much
# whitespace is one.
def test_long_roles(sql, database_url):
    member = sql.member("scout")
    long_name = "brig" + "x" * 20000
    write_roles(database_url, "service_role", member.id, [long_name + "   ", " " * 5000 + "BRIG" + "\t" * 5000])
    assert stored(sql, member.id) == [long_name, "brigged"]


# A rewrite that changes nothing in canonical terms is no change: LiveKit is not asked again.
def test_a_respelling_of_the_same_roles_queues_no_livekit_job(sql, database_url):
    member = sql.member("scout", ["brigged", "Medic"])
    before = jobs_for(sql, member.id)
    write_roles(database_url, "service_role", member.id, ["BRIG", " medic"])
    assert stored(sql, member.id) == ["brigged", "Medic"]
    assert jobs_for(sql, member.id) == before


# SQL's canonical_role and shared/ranks.py's are one rule.
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(role=st.one_of(
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=20),
    st.builds(lambda a, w, b: a + w + b,
              st.text(" \t\n\r\x0b\x0c\u00a0\u2003\u3000\u2028\u0085\u200b\ufeff", max_size=3),
              st.sampled_from(["brig", "BRIG", "Brigged", "medic", "RESCUE", "Pilot", "bri g", "brigg"]),
              st.text(" \t\n\r\x0b\x0c\u00a0\u2003\u3000\u2028\u0085\u200b\ufeff", max_size=3))))
def test_sql_and_python_spell_roles_alike(sql, role):
    assert sql.one("SELECT public.canonical_role(%s)", (role,)) == canonical_role(role)
    assert sql.one("SELECT nexus_private.is_brigged(%s)", ([role],)) is is_brigged([role])


def test_python_is_brigged_reads_any_spelling_and_tolerates_nulls():
    for spelling in BRIG_SPELLINGS:
        assert is_brigged(["Medic", spelling])
    assert not is_brigged(None) and not is_brigged([]) and not is_brigged([None, "Medic", "brigg", "bri g"])
    assert is_brigged([None, "brig"])


# -- a brig in any spelling is a brig ------------------------------------------------------------

def _rights(sql, member_id: str, net: str) -> tuple:
    r = sql.one("SELECT public.voice_rights(%s, %s)", (member_id, net))
    return r["canJoin"], r["canSubscribe"], r["canPublish"], r["canPublishData"]


def _token(member, net: str):
    from functions.livekit_token.app import app

    return Client(app).post({"roomName": net}, member.auth())


@pytest.fixture
def bypassed(database_url):
    """The owner writing with triggers off (session_replication_role = replica, as a restore
    does): the stored spelling is what readers then see."""
    def write(member_id: str, roles: list[str]) -> None:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("SET session_replication_role = replica")
            conn.execute("UPDATE public.profiles SET roles = %s WHERE id = %s", (roles, member_id))
    return write


@pytest.mark.parametrize("spelling", ["brig", "Brig", "brigged ", "\tBRIG\n"], ids=repr)
@pytest.mark.parametrize("writer", ["service_role", "postgres", "triggers bypassed"])
def test_livekit_token_and_voice_rights_refuse_a_brig_in_any_spelling(env, sql, database_url, bypassed,
                                                                        writer, spelling):
    net = sql.net()
    member = sql.member("pioneer")
    assert _token(member, net).status == 200
    if writer == "triggers bypassed":
        bypassed(member.id, ["Medic", spelling])
    else:
        write_roles(database_url, writer, member.id, ["Medic", spelling])

    reply = _token(member, net)

    assert (reply.status, reply.json["error"]) == (403, "FORBIDDEN"), reply
    assert "brig" in reply.json["message"]
    assert _rights(sql, member.id, net) == (False, False, False, False)


@pytest.fixture
def member_admin(env):
    from tests.peers.livekit_twirp import LiveKitTwirpFake
    from functions.member_admin.app import app
    from shared import config

    with LiveKitTwirpFake(support.LIVEKIT_KEY, support.LIVEKIT_SECRET) as fake:
        env.setenv("LIVEKIT_URL", fake.url)
        config.get_settings.cache_clear()
        yield Client(app)


@pytest.mark.parametrize("spelling", ["brig", " Brig", "BRIGGED\t"], ids=repr)
@pytest.mark.parametrize("writer", ["service_role", "postgres", "triggers bypassed"])
def test_member_admin_refuses_an_actor_brigged_in_any_spelling(member_admin, sql, database_url, bypassed,
                                                               writer, spelling):
    pioneer, scout = sql.member("pioneer"), sql.member("scout")
    if writer == "triggers bypassed":
        bypassed(pioneer.id, [spelling])
    else:
        write_roles(database_url, writer, pioneer.id, [spelling])

    reply = member_admin.post({"userId": scout.id, "rank": "vagrant", "reason": "test"}, pioneer.auth())

    assert (reply.status, reply.json["error"]) == (403, "FORBIDDEN"), reply
    assert sql.one("SELECT rank FROM public.profiles WHERE id = %s", (scout.id,)) == "scout"


# A member brigged by SQL in another spelling is let out by member-admin's `brig` or `brigged`.
@pytest.mark.parametrize("removal", ["brig", "BRIGGED"])
def test_member_admin_releases_a_brig_written_in_another_spelling(member_admin, sql, database_url, removal):
    founder, scout = sql.member("founder"), sql.member("scout")
    write_roles(database_url, "service_role", scout.id, [" Brig ", "Medic"])

    reply = member_admin.post({"userId": scout.id, "removeRoles": [removal], "reason": "served"}, founder.auth())

    assert reply.status == 200, reply
    assert reply.json["before"]["roles"] == ["brigged", "Medic"] and reply.json["roles"] == ["Medic"]
    assert stored(sql, scout.id) == ["Medic"]


# -- a brigged founder loses the audit ------------------------------------------------------------

def _audit_visible(database_url: str, member_id: str, about: str) -> int:
    with psycopg.connect(database_url) as conn:
        conn.execute("SET ROLE authenticated")
        conn.execute("SELECT set_config('request.jwt.claims', %s, false)",
                     (json.dumps({"sub": member_id, "role": "authenticated"}),))
        return conn.execute("SELECT count(*) FROM public.admin_audit WHERE member_id = %s", (about,)).fetchone()[0]


@pytest.mark.parametrize("rank", ["founder", "pioneer"])
def test_a_brigged_founder_reads_no_audit(sql, database_url, bypassed, rank):
    target = sql.member("scout")
    sql.one("SELECT public.member_admin_change(NULL, %s, 'vagrant', '[]', '[]', 'audit me', 'ops')", (target.id,))
    reader = sql.member(rank)
    assert _audit_visible(database_url, reader.id, target.id) == 1
    sql.execute("UPDATE public.profiles SET roles = '{brigged}' WHERE id = %s", (reader.id,))
    assert _audit_visible(database_url, reader.id, target.id) == 0
    bypassed(reader.id, ["Brig "])  # even a spelling the trigger never let through
    assert _audit_visible(database_url, reader.id, target.id) == 0


# -- rows written before the rule: existing and adopted ------------------------------------------

@pytest.fixture
def before_the_rule(pg):
    """A database migrated up to just before this issue's migrations."""
    with support.migrated_database(pg, "roles", before=MY_FIRST_VERSION) as url:
        yield url


# Given members whose roles were written in other spellings before the rule (SQL in the
# dashboard), when the migrations run, then their roles are canonical, and a member who was
# `brig` (a brig nowhere before) is now brigged and queued for LiveKit to follow.
def test_migrating_rewrites_existing_roles(before_the_rule):
    with psycopg.connect(before_the_rule, autocommit=True) as conn:
        def user(roles: list) -> str:
            uid = str(uuid.uuid4())
            conn.execute("INSERT INTO auth.users (id, email) VALUES (%s, %s)", (uid, f"{uid}@example.test"))
            conn.execute("UPDATE public.profiles SET rank = 'scout', roles = %s WHERE id = %s", (roles, uid))
            return uid

        brig = user(["Brig ", "medic", None])
        mixed = user(["  Pilot", "pilot", "RESCUE", "", "Rescue"])
        clean = user(["brigged", "Medic"])
        untouched = conn.execute("SELECT updated_at FROM public.profiles WHERE id = %s", (clean,)).fetchone()[0]
        conn.execute("DELETE FROM nexus_private.livekit_access_jobs")  # the arrangement's own, applied long ago
        migrate.migrate(before_the_rule, log=lambda *_: None)

        def roles(uid: str) -> list[str]:
            return conn.execute("SELECT roles FROM public.profiles WHERE id = %s", (uid,)).fetchone()[0]

        assert roles(brig) == ["brigged", "Medic"]
        assert roles(mixed) == ["Pilot", "Rescue"]
        assert roles(clean) == ["brigged", "Medic"]
        assert conn.execute("SELECT updated_at FROM public.profiles WHERE id = %s", (clean,)).fetchone()[0] == untouched
        queued = {u for (u,) in conn.execute(
            "SELECT user_id::text FROM nexus_private.livekit_access_jobs WHERE status = 'pending'")}
        assert brig in queued and clean not in queued
        rights = conn.execute("SELECT public.voice_rights(%s, 'any-net')", (brig,)).fetchone()[0]
        assert rights["canJoin"] is False


# Given the predecessor's members with roles in spellings its frontend wrote (a tab, a newline,
# a NULL element, a blank, case twins), when the chain adopts the database, then the adopted
# rows hold canonical roles too.
def test_adopted_roles_are_canonical(pg):
    name = f"roles_adopt_{uuid.uuid4().hex[:10]}"
    url = pg.create_database(name)
    try:
        old = predecessor.build(url)
        odd = str(uuid.uuid4())
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("INSERT INTO auth.users (id, email) VALUES (%s, %s)", (odd, f"{odd}@example.test"))
            conn.execute("UPDATE public.profiles SET rank = 'scout', roles = %s WHERE id = %s",
                         (["\tbrig ", "MEDIC\n", "medic", None, "  ", "Ranger", "ranger\t"], odd))
        migrate.migrate(url, log=lambda *_: None)
        with psycopg.connect(url) as conn:
            got = dict(conn.execute("SELECT id::text, roles FROM public.profiles").fetchall())
        # canonical, and the responder role (in whatever spelling) held until an operator confirms it
        assert got[odd] == ["brigged", "Ranger"]
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT held_roles FROM nexus_adopt.holds WHERE member_id = %s",
                                (odd,)).fetchone() == (["Medic"],)
        assert got[old["brig"]] == ["brigged"]
        for roles in got.values():
            assert roles == [canonical_role(r) for r in roles]
            assert len({r.lower() for r in roles}) == len(roles)
    finally:
        pg.drop_database(name)


# Given medics, one brigged with triggers off in another spelling (a restore, or the owner with
# session_replication_role = replica), when a scout launches a rescue flare, then only the medic
# who is not brigged is called, and the brigged one cannot read the flare: the flare's fan-out and
# its RLS read a brig in any spelling, as voice_rights and livekit-token do.
@pytest.mark.parametrize("spelling", ["brig", "Brig", "brigged ", "\tBRIG\n"], ids=repr)
def test_a_brigged_medic_in_any_spelling_is_not_called_to_a_flare(sql, database_url, bypassed, spelling):
    sender = sql.member("scout")
    free = sql.member("scout", ["Medic"])
    brigged = sql.member("scout", ["Medic"])
    bypassed(brigged.id, ["Medic", spelling])

    flare = sql.one("SELECT public.launch_rescue_flare(%s, 'MEDICAL', 'Stanton', 60)", (sender.id,))
    called = {r[0] for r in sql.execute("SELECT recipient_id::text FROM public.notification_queue "
                                        "WHERE id = ANY(%s::uuid[])", (flare["notificationIds"],))}
    assert brigged.id not in called and free.id in called

    def sees(member) -> int:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("SET ROLE authenticated")
            conn.execute("SELECT set_config('request.jwt.claims', %s, false)",
                         (json.dumps({"sub": member.id, "role": "authenticated"}),))
            return conn.execute("SELECT count(*) FROM public.flares WHERE id = %s",
                                (flare["flareId"],)).fetchone()[0]

    assert (sees(free), sees(brigged)) == (1, 0)
