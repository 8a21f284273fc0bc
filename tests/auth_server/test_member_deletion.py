"""Deleting a member through the auth server's admin API (hard and soft delete) always
succeeds, whatever they hold, and leaves the rows docs/schema-contract.md's rule says:
what was theirs alone goes, what others rely on stays without them, open pods end with
their rooms' deletes due, and the audit keeps its rows."""

from __future__ import annotations

import uuid

import pytest

from tests.auth_server.conftest import call_function

MODES = ["hard", "soft"]


@pytest.fixture
def members(auth, sql, functions_env):
    """Members made through the auth server, with sessions from signing in."""

    def make(rank: str = "scout", roles: list[str] | None = None):
        user_id = auth.create_user(callsign=f"Member {uuid.uuid4().hex[:8]}")
        sql.execute("UPDATE public.profiles SET rank = %s, roles = %s WHERE id = %s", (rank, roles or [], user_id))
        email = sql.one("SELECT email FROM auth.users WHERE id = %s", (user_id,))
        return auth.sign_in(email)

    return make


def delete(auth, sql, user_id: str, mode: str) -> None:
    status, body = auth.delete_user(user_id, soft=mode == "soft")
    assert status == 200, (status, body)
    assert sql.one("SELECT count(*) FROM public.profiles WHERE id = %s", (user_id,)) == 0
    if mode == "hard":
        assert sql.one("SELECT count(*) FROM auth.users WHERE id = %s", (user_id,)) == 0
    else:
        assert sql.one("SELECT deleted_at IS NOT NULL FROM auth.users WHERE id = %s", (user_id,)) is True


def skill_with_guide(sql, guide_id: str) -> str:
    skill = sql.one("INSERT INTO public.skills (name) VALUES (%s) RETURNING id::text", (f"Skill {uuid.uuid4().hex[:8]}",))
    sql.execute("INSERT INTO public.certifications (user_id, skill_id) VALUES (%s, %s)", (guide_id, skill))
    return skill


def open_pod(cadet, guide, skill: str) -> dict:
    reply = call_function("academy-request", {"skillId": skill}, cadet.auth())
    assert reply.status in (200, 201), reply
    reply = call_function("academy-accept", {"requestId": reply.json["requestId"]}, guide.auth())
    assert reply.status in (200, 201), reply
    return reply.json


def pod_row(sql, pod_id: str) -> dict:
    cols = ("cadet_id", "guide_id", "end_reason", "ended", "room_delete_due")
    row = sql.execute("SELECT cadet_id::text, guide_id::text, end_reason, ended_at IS NOT NULL, "
                      "room_delete_due_at <= now() FROM public.sim_pods WHERE id = %s", (pod_id,))
    return dict(zip(cols, row[0])) if row else {}


def request_row(sql, pod_id: str) -> tuple:
    return sql.execute("SELECT status, cadet_id::text, guide_id::text FROM public.instruction_requests "
                       "WHERE sim_pod_id = %s", (pod_id,))[0]


# Given a member with devices, notifications and a certification, then all of it goes.
@pytest.mark.parametrize("mode", MODES)
def test_a_plain_member(auth, sql, members, mode):
    member = members("voyager")
    sql.execute("INSERT INTO public.push_subscriptions (user_id, endpoint, p256dh, auth) VALUES (%s, %s, %s, %s)",
                (member.user_id, f"https://push.example.test/{uuid.uuid4().hex}", "B" + "A" * 86, "A" * 22))
    sql.execute("INSERT INTO public.notification_queue (recipient_id, type, title) VALUES (%s, 'NOTE', 'Hello')",
                (member.user_id,))
    skill_with_guide(sql, member.user_id)
    delete(auth, sql, member.user_id, mode)
    for table, col in (("push_subscriptions", "user_id"), ("notification_queue", "recipient_id"),
                       ("certifications", "user_id")):
        assert sql.one(f"SELECT count(*) FROM public.{table} WHERE {col} = %s", (member.user_id,)) == 0, table
    # LiveKit is to follow: a job brings the rooms they are in to their rights (none, without a profile).
    assert sql.one("SELECT count(*) FROM nexus_private.livekit_access_jobs WHERE user_id = %s AND status = 'pending'",
                   (member.user_id,)) == 1


# Given a guide in an open pod, then the pod ends (its room's delete due now), the request
# is completed without a guide, and the cadet keeps everything of theirs.
@pytest.mark.parametrize("mode", MODES)
def test_a_guide_with_an_open_pod(auth, sql, members, mode):
    cadet, guide = members("vagrant"), members("voyager")
    pod = open_pod(cadet, guide, skill_with_guide(sql, guide.user_id))
    delete(auth, sql, guide.user_id, mode)
    assert pod_row(sql, pod["simPodId"]) == {"cadet_id": cadet.user_id, "guide_id": None,
                                             "end_reason": "MEMBER_DELETED", "ended": True, "room_delete_due": True}
    assert request_row(sql, pod["simPodId"]) == ("COMPLETED", cadet.user_id, None)
    assert sql.one("SELECT count(*) FROM public.profiles WHERE id = %s", (cadet.user_id,)) == 1
    # The pod's room is no longer one the cadet can get a token for.
    reply = call_function("livekit-token", {"roomName": pod["roomName"], "participantName": "Cadet"}, cadet.auth())
    assert reply.status in (403, 404, 409, 410), reply


# Given a cadet in an open pod who also has a request no guide took, then the pod ends,
# the taken request stays for the guide's history without them, the other goes.
@pytest.mark.parametrize("mode", MODES)
def test_a_cadet_in_an_open_pod(auth, sql, members, mode):
    cadet, guide = members("vagrant"), members("voyager")
    pod = open_pod(cadet, guide, skill_with_guide(sql, guide.user_id))
    other_skill = skill_with_guide(sql, guide.user_id)
    pending = call_function("academy-request", {"skillId": other_skill}, cadet.auth()).json["requestId"]
    delete(auth, sql, cadet.user_id, mode)
    assert pod_row(sql, pod["simPodId"]) == {"cadet_id": None, "guide_id": guide.user_id,
                                             "end_reason": "MEMBER_DELETED", "ended": True, "room_delete_due": True}
    assert request_row(sql, pod["simPodId"]) == ("COMPLETED", None, guide.user_id)
    assert sql.one("SELECT count(*) FROM public.instruction_requests WHERE id = %s", (pending,)) == 0
    assert sql.one("SELECT count(*) FROM public.certifications WHERE user_id = %s", (guide.user_id,)) == 2


# Given a member who launched a flare, the flare stays for its responders, without a sender.
@pytest.mark.parametrize("mode", MODES)
def test_a_flare_sender(auth, sql, members, mode):
    sender = members("scout")
    members("voyager", ["Medic"])
    reply = call_function("handle-rescue-request", {"location": "Hurston L1", "flareType": "MEDICAL"}, sender.auth())
    assert reply.status in (200, 201, 202), reply
    flare = reply.json["flareId"]
    delete(auth, sql, sender.user_id, mode)
    assert sql.execute("SELECT sender_id, location FROM public.flares WHERE id = %s", (flare,)) == [(None, "Hurston L1")]


# Given a founder who bridged two nets, the bridge stays, without its maker.
@pytest.mark.parametrize("mode", MODES)
def test_a_bridge_maker(auth, sql, members, mode):
    founder = members("founder")
    a, b = (sql.one("SELECT id::text FROM public.voice_nets WHERE code = %s", (sql.net(),)) for _ in range(2))
    reply = call_function("net-bridge", {"sourceNetId": a, "targetNetId": b, "action": "link"}, founder.auth())
    assert reply.status in (200, 201), reply
    delete(auth, sql, founder.user_id, mode)
    assert sql.execute("SELECT created_by FROM public.voice_net_bridges WHERE id = %s", (reply.json["id"],)) == [(None,)]


# Given a founder whose changes the audit holds, the audit keeps every row as it was.
@pytest.mark.parametrize("mode", MODES)
def test_a_founder_with_audit_rows(auth, sql, members, mode):
    founder, member = members("founder"), members("vagrant")
    reply = call_function("member-admin", {"userId": member.user_id, "rank": "scout", "reason": "trained"},
                          founder.auth())
    assert reply.status == 200, reply
    audit = "SELECT * FROM public.admin_audit WHERE actor_id = %s OR member_id = %s ORDER BY id"
    before = sql.execute(audit, (founder.user_id, founder.user_id))
    assert before
    delete(auth, sql, founder.user_id, mode)
    assert sql.execute(audit, (founder.user_id, founder.user_id)) == before


# Plain SQL deletes the same way (an operator in the SQL editor, or Supabase's dashboard).
@pytest.mark.parametrize("table", ["auth.users", "public.profiles"])
def test_plain_sql_deletes_a_guide_with_an_open_pod(sql, members, table):
    cadet, guide = members("vagrant"), members("voyager")
    pod = open_pod(cadet, guide, skill_with_guide(sql, guide.user_id))
    sql.execute(f"DELETE FROM {table} WHERE id = %s", (guide.user_id,))
    assert pod_row(sql, pod["simPodId"])["end_reason"] == "MEMBER_DELETED"
    assert sql.one("SELECT count(*) FROM public.profiles WHERE id = %s", (guide.user_id,)) == 0


# -- a member of the adopted predecessor -------------------------------------------------

MEMBER_COLUMNS = ("user_id", "sender_id", "recipient_id", "cadet_id", "guide_id", "created_by", "certified_by")


@pytest.fixture(scope="module")
def adopted_auth(pg, auth_binary):
    """The predecessor fixture (tests/predecessor.py) adopted by our chain, with its own auth server."""
    from nexus import auth_server
    from nexus.migrate import migrate
    from tests import predecessor, support
    from tests.auth_server.conftest import Auth

    name = f"adopt_auth_{uuid.uuid4().hex[:8]}"
    url = pg.create_database(name)
    old = predecessor.build(url)
    migrate(url, log=lambda *_: None)
    server = auth_server.AuthServer(url, support.JWT_SECRET, auth_server.new_signing_jwk(),
                                    external_url=support.ISSUER, binary=auth_binary)
    server.start()
    try:
        yield old, Auth(server), support.Db(url)
    finally:
        server.stop()
        pg.drop_database(name)


def adopt_record_rows(db, user_id: str) -> int:
    total = 0
    for table, column in db.execute(
            "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'nexus_adopt' "
            "AND data_type = 'uuid' AND (column_name = ANY(%s) OR (table_name = 'profiles' AND column_name = 'id'))",
            (list(MEMBER_COLUMNS),)):
        total += db.one(f'SELECT count(*) FROM nexus_adopt."{table}" WHERE "{column}" = %s', (user_id,))
    return total


# Given adopted members (the founder who made bridges and guided, the scout who sent flares
# and asked for training, the medic with devices and notifications), each deletion answers
# 200 and their rows in the predecessor's record go with them.
@pytest.mark.parametrize("key,mode", [("founder", "hard"), ("scout", "soft"), ("medic", "hard")])
def test_a_member_of_the_adopted_predecessor(adopted_auth, key, mode):
    old, auth, db = adopted_auth
    user_id = old[key]
    assert adopt_record_rows(db, user_id) > 0
    status, body = auth.delete_user(user_id, soft=mode == "soft")
    assert status == 200, (status, body)
    assert db.one("SELECT count(*) FROM public.profiles WHERE id = %s", (user_id,)) == 0
    assert adopt_record_rows(db, user_id) == 0
    # Nothing of ours names them any more, except the audit and the history others keep.
    for table, column in (("push_subscriptions", "user_id"), ("notification_queue", "recipient_id"),
                          ("certifications", "user_id"), ("flares", "sender_id"),
                          ("voice_net_bridges", "created_by"), ("instruction_requests", "cadet_id"),
                          ("instruction_requests", "guide_id")):
        assert db.one(f"SELECT count(*) FROM public.{table} WHERE {column} = %s", (user_id,)) == 0, table


# Given a pod whose guide was deleted, when its cadet is deleted too, then the pod row (which
# carries its room's pending delete) and its request stay, naming neither.
def test_both_members_of_a_pod_deleted_one_after_the_other(auth, sql, members):
    cadet, guide = members("vagrant"), members("voyager")
    pod = open_pod(cadet, guide, skill_with_guide(sql, guide.user_id))
    delete(auth, sql, guide.user_id, "hard")
    delete(auth, sql, cadet.user_id, "soft")
    assert pod_row(sql, pod["simPodId"]) == {"cadet_id": None, "guide_id": None, "end_reason": "MEMBER_DELETED",
                                             "ended": True, "room_delete_due": True}
    assert request_row(sql, pod["simPodId"]) == ("COMPLETED", None, None)


# Given a guest (an anonymous sign-in) the admin API soft-deleted, when an admin later confirms
# an email for that user (the auth server then clears is_anonymous), the deleted user still
# gets no profile: a user with deleted_at set counts as deleted.
def test_a_soft_deleted_guest_made_permanent_gets_no_profile(auth, sql):
    guest = auth.anonymous()
    status, body = auth.delete_user(guest.user_id, soft=True)
    assert status == 200, body
    status, body = auth.admin("PUT", f"/admin/users/{guest.user_id}",
                              {"email": f"{uuid.uuid4().hex[:12]}@example.test", "email_confirm": True})
    assert status == 200, body
    assert sql.one("SELECT is_anonymous FROM auth.users WHERE id = %s", (guest.user_id,)) is False
    assert sql.one("SELECT count(*) FROM public.profiles WHERE id = %s", (guest.user_id,)) == 0

