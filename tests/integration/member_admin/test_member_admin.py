"""member-admin against real Postgres and the real migrations, LiveKit as the Twirp fake.

The endpoint's own change reaches LiveKit before it answers: the fake's
participant list (what LiveKit would list) is asserted right after the 200.
"""

from __future__ import annotations

import json
import threading
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.member_admin.conftest import audit_rows, connect, jobs_for, rights_in
from tests.support import Client


@pytest.fixture
def client(env, lk):
    from functions.member_admin.app import app

    return Client(app)


def change(member, reason: str = "test", **fields) -> dict:
    return {"userId": member.id if hasattr(member, "id") else member, "reason": reason, **fields}


# Given a scout publishing on two nets, when a founder puts them in the brig,
# then the answer comes after LiveKit removed them from both rooms, and the audit says who, what and why.
def test_brig_removes_a_publishing_scout_from_every_room(client, sql, lk):
    founder, scout = sql.member("founder"), sql.member("scout")
    alpha, bravo = sql.net(), sql.net()
    connect(sql, lk, scout, alpha, publish=True)
    connect(sql, lk, scout, bravo, publish=True)

    reply = client.post(change(scout, "griefing on alpha", addRoles=["brig"]), founder.auth())

    assert reply.status == 200, reply
    assert reply.json["roles"] == ["brigged"] and reply.json["before"] == {"rank": "scout", "roles": []}
    assert reply.json["livekit"] == {"applied": True, "removed": 2, "updated": 0, "pending": False}
    assert rights_in(lk, alpha, scout) is None and rights_in(lk, bravo, scout) is None
    assert audit_rows(sql, scout.id) == [("member", founder.id, None, {"rank": "scout", "roles": []},
                                          {"rank": "scout", "roles": ["brigged"]}, "griefing on alpha")]
    assert jobs_for(sql, scout.id) == 0


# Given a scout publishing on a net where scouts transmit, when demoted to vagrant,
# then they stay in the room, still subscribed, but may no longer publish; the metadata shows the new rank.
def test_demote_stops_publishing_but_keeps_listening(client, sql, lk):
    founder, scout = sql.member("founder"), sql.member("scout")
    net = sql.net(join="vagrant", rx="vagrant", tx="scout")
    before = connect(sql, lk, scout, net, publish=True)

    reply = client.post(change(scout, rank="vagrant"), founder.auth())

    assert reply.status == 200, reply
    assert reply.json["livekit"]["updated"] == 1
    assert rights_in(lk, net, scout) == {"sid": before.sid, "subscribe": True, "publish": False, "data": False,
                                         "sources": [], "rank": "vagrant"}


# Given a listening vagrant, when promoted to scout, then they may publish the microphone
# (only) in the same session, without reconnecting, and their metadata says scout.
def test_promote_publishes_without_reconnecting(client, sql, lk):
    pioneer, vagrant = sql.member("pioneer"), sql.member("vagrant")
    net = sql.net(join="vagrant", rx="vagrant", tx="scout")
    before = connect(sql, lk, vagrant, net, publish=False)

    reply = client.post(change(vagrant, rank="scout"), pioneer.auth())

    assert reply.status == 200, reply
    assert rights_in(lk, net, vagrant) == {"sid": before.sid, "subscribe": True, "publish": True, "data": True,
                                           "sources": ["MICROPHONE"], "rank": "scout"}


# Given a member whose rights did not change in LiveKit's terms (a role that grants nothing),
# when the change is applied, then LiveKit is asked but nobody is updated or removed.
def test_a_change_that_grants_nothing_leaves_livekit_alone(client, sql, lk):
    founder, scout = sql.member("founder"), sql.member("scout")
    net = sql.net()
    connect(sql, lk, scout, net, publish=True)

    reply = client.post(change(scout, addRoles=["Pilot"]), founder.auth())

    assert reply.status == 200 and reply.json["livekit"] == {"applied": True, "removed": 0, "updated": 0,
                                                             "pending": False}
    assert lk.calls_to("UpdateParticipant") == [] and lk.calls_to("RemoveParticipant") == []


# Role names match case-insensitively and are stored in one spelling.
def test_roles_are_stored_in_their_canonical_spelling(client, sql, lk):
    founder, scout = sql.member("founder"), sql.member("scout", ["pilot"])

    added = client.post(change(scout, addRoles=["MEDIC", "rescue", "Pilot", "Brig"]), founder.auth())
    assert added.status == 200, added
    assert added.json["roles"] == ["pilot", "Medic", "Rescue", "brigged"]

    removed = client.post(change(scout, removeRoles=["BRIGGED", "medic", "PILOT"]), founder.auth())
    assert removed.json["roles"] == ["Rescue"]
    assert sql.one("SELECT roles FROM public.profiles WHERE id = %s", (scout.id,)) == ["Rescue"]


@pytest.mark.parametrize("spelling,canonical", [("brig", "brigged"), ("BRIGGED", "brigged"), (" medic ", "Medic"),
                                                ("RESCUE", "Rescue"), ("Pilot", "Pilot"), ("quartermaster", "quartermaster")])
def test_canonical_role_spellings(sql, spelling, canonical):
    assert sql.one("SELECT public.canonical_role(%s)", (spelling,)) == canonical


def _refusal_cases():
    # (actor rank, actor roles, member rank, change, status, code)
    return {
        "scout actor": ("scout", [], "vagrant", {"rank": "scout"}, 403, "INSUFFICIENT_CLEARANCE"),
        "voyager actor": ("voyager", [], "vagrant", {"addRoles": ["brig"]}, 403, "INSUFFICIENT_CLEARANCE"),
        "member of equal rank": ("founder", [], "founder", {"addRoles": ["brig"]}, 403, "INSUFFICIENT_CLEARANCE"),
        "member of higher rank": ("founder", [], "pioneer", {"rank": "scout"}, 403, "INSUFFICIENT_CLEARANCE"),
        "raise to own rank": ("founder", [], "scout", {"rank": "founder"}, 403, "INSUFFICIENT_CLEARANCE"),
        "raise above own rank": ("founder", [], "scout", {"rank": "pioneer"}, 403, "INSUFFICIENT_CLEARANCE"),
        "brigged actor": ("pioneer", ["brigged"], "scout", {"rank": "vagrant"}, 403, "FORBIDDEN"),
        "brigged actor, other spelling": ("pioneer", ["Brigged"], "scout", {"addRoles": ["Medic"]}, 403, "FORBIDDEN"),
        "add and remove one role": ("pioneer", [], "scout", {"addRoles": ["medic"], "removeRoles": ["Medic"]},
                                    400, "BAD_REQUEST"),
    }


# Every refusal answers its code and writes nothing: no profile change, no audit row, no LiveKit job,
# no LiveKit call.
@pytest.mark.parametrize("case", list(_refusal_cases()))
def test_refusals_write_nothing(client, sql, lk, case):
    actor_rank, actor_roles, member_rank, fields, status, code = _refusal_cases()[case]
    actor, member = sql.member(actor_rank, actor_roles), sql.member(member_rank)
    net = sql.net()
    connect(sql, lk, member, net, publish=member_rank != "vagrant")
    profile = sql.execute("SELECT rank, roles, updated_at FROM public.profiles WHERE id = %s", (member.id,))
    jobs = jobs_for(sql, member.id)

    reply = client.post(change(member, **fields), actor.auth())

    assert (reply.status, reply.json["error"]) == (status, code), reply
    assert sql.execute("SELECT rank, roles, updated_at FROM public.profiles WHERE id = %s", (member.id,)) == profile
    assert audit_rows(sql, member.id) == []
    assert jobs_for(sql, member.id) == jobs
    assert lk.calls == []


def test_changing_yourself_is_refused(client, sql, lk):
    pioneer = sql.member("pioneer")
    reply = client.post(change(pioneer, rank="vagrant"), pioneer.auth())
    assert (reply.status, reply.json["error"]) == (403, "FORBIDDEN"), reply
    assert audit_rows(sql, pioneer.id) == []
    assert sql.one("SELECT rank FROM public.profiles WHERE id = %s", (pioneer.id,)) == "pioneer"


def test_unknown_member_is_404_and_writes_nothing(client, sql, lk):
    founder = sql.member("founder")
    ghost = str(uuid.uuid4())
    reply = client.post(change(ghost, rank="scout"), founder.auth())
    assert (reply.status, reply.json["error"]) == (404, "NOT_FOUND"), reply
    assert audit_rows(sql, ghost) == []


# Given founders and a pioneer changing one member at the same time, every change lands in order:
# each audit row's `before` is exactly the state the previous row left, and the last `after` is the profile.
def test_concurrent_changes_leave_a_consistent_audit_trail(client, sql, lk):
    actors = [sql.member("pioneer"), sql.member("pioneer"), sql.member("founder")]
    member = sql.member("scout")
    changes = [{"rank": "vagrant"}, {"rank": "scout"}, {"addRoles": ["Medic"]}, {"removeRoles": ["medic"]},
               {"addRoles": ["brig"]}, {"removeRoles": ["brig"]}, {"rank": "voyager"}, {"addRoles": ["Rescue"]}]
    statuses: list[int] = []
    start = threading.Barrier(len(changes))

    def worker(i: int) -> None:
        start.wait()
        statuses.append(client.post(change(member, f"change {i}", **changes[i]), actors[i % 3].auth()).status)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(changes))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    rows = audit_rows(sql, member.id)
    # a founder may not touch a voyager: whatever the order, only those refusals are missing
    assert len(rows) == statuses.count(200) and set(statuses) <= {200, 403}
    assert rows[0][3] == {"rank": "scout", "roles": []}
    for previous, current in zip(rows, rows[1:]):
        assert current[3] == previous[4], "a change's `before` must be the state the previous change left"
    final = sql.execute("SELECT rank, roles FROM public.profiles WHERE id = %s", (member.id,))[0]
    assert rows[-1][4] == {"rank": final[0], "roles": final[1]}


# The audit is readable by founders and pioneers under RLS, by nobody else, and written by nobody directly.
def test_audit_is_readable_by_founders_only(client, sql, lk, database_url):
    import psycopg

    founder, scout = sql.member("founder"), sql.member("scout")
    target = sql.member("vagrant")
    assert client.post(change(target, rank="scout"), founder.auth()).status == 200

    def visible(as_member) -> int:
        with psycopg.connect(database_url) as conn:
            conn.execute("SET ROLE authenticated")
            conn.execute("SELECT set_config('request.jwt.claims', %s, false)",
                         (json.dumps({"sub": as_member.id, "role": "authenticated"}),))
            return conn.execute("SELECT count(*) FROM public.admin_audit WHERE member_id = %s",
                                (target.id,)).fetchone()[0]

    assert visible(founder) == 1 and visible(sql.member("pioneer")) == 1
    assert visible(scout) == 0 and visible(target) == 0


# LiveKit refusing to answer does not lose the change: 200, `pending`, the job waits for the schedule.
def test_livekit_down_leaves_the_change_queued(client, sql, lk):
    founder, scout = sql.member("founder"), sql.member("scout")
    net = sql.net()
    connect(sql, lk, scout, net, publish=True)
    lk.set_down("503")

    reply = client.post(change(scout, addRoles=["brigged"]), founder.auth())

    assert reply.status == 200, reply
    assert reply.json["livekit"] == {"applied": False, "removed": 0, "updated": 0, "pending": True}
    assert sql.one("SELECT roles FROM public.profiles WHERE id = %s", (scout.id,)) == ["brigged"]
    assert sql.one("SELECT count(*) FROM nexus_private.livekit_access_jobs WHERE user_id = %s AND status = 'pending' "
                   "AND next_run_at > now() AND last_error IS NOT NULL", (scout.id,)) == 1


# -- the HTTP edge ------------------------------------------------------------

def test_bad_bodies_are_400_with_field_details(client, sql, lk):
    founder, scout = sql.member("founder"), sql.member("scout")
    for body in [{"userId": scout.id, "reason": "x"},                         # nothing to change
                 {"userId": scout.id, "rank": "admiral", "reason": "x"},
                 {"userId": scout.id, "rank": "vagrant"},                     # no reason
                 {"userId": scout.id, "rank": "vagrant", "reason": ""},
                 {"userId": "not-a-uuid", "rank": "vagrant", "reason": "x"},
                 {"userId": scout.id, "addRoles": ["bad\nrole"], "reason": "x"},
                 {"userId": scout.id, "addRoles": "brig", "reason": "x"},
                 {"userId": scout.id, "addRoles": ["r"] * 17, "reason": "x"}]:
        reply = client.post(body, founder.auth())
        assert (reply.status, reply.json["error"]) == (400, "BAD_REQUEST"), (body, reply)
    assert audit_rows(sql, scout.id) == []


# The audit holds the reason and founders read it (in psql too): the text rules
# others are shown by (issue 24), so no terminal escape, bidi or zero-width character.
@pytest.mark.parametrize("reason", ["ok\x1b[2J", "ok \u202eeci", "o\u200bk", "one\ntwo", "\u3000\u2800"], ids=repr)
def test_a_reason_others_must_not_be_shown_is_400(client, sql, lk, reason):
    founder, scout = sql.member("founder"), sql.member("scout")
    reply = client.post({"userId": scout.id, "rank": "vagrant", "reason": reason}, founder.auth())
    assert (reply.status, reply.json["error"]) == (400, "BAD_REQUEST"), reply
    assert "reason" in json.dumps(reply.json["details"])
    assert audit_rows(sql, scout.id) == []
    assert sql.one("SELECT rank FROM public.profiles WHERE id = %s", (scout.id,)) == "scout"


def test_no_token_is_401(client, sql, lk):
    reply = client.post({"userId": str(uuid.uuid4()), "rank": "scout", "reason": "x"},
                        {"content-type": "application/json"})
    assert reply.status == 401 and reply.json["error"] == "UNAUTHORIZED"


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
                     max_leaves=12)
_field = {
    "userId": st.one_of(st.uuids().map(str), _json),
    "rank": st.one_of(st.sampled_from(["vagrant", "scout", "voyager", "founder", "pioneer", "Scout", ""]), _json),
    "addRoles": st.one_of(st.lists(st.sampled_from(["brig", "Medic", "RESCUE", "x" * 41, "", "ok role"]), max_size=4),
                          _json),
    "removeRoles": st.one_of(st.lists(st.sampled_from(["brigged", "medic", "Pilot", "\u0000"]), max_size=4), _json),
    "reason": st.one_of(st.text(max_size=40), _json),
}


# Whatever the body, the answer is never a 5xx, and a refusal changes nothing for the member.
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=st.one_of(st.fixed_dictionaries({}, optional=_field), _json))
def test_http_edge_never_5xx_and_refusals_write_nothing(client, sql, lk, body):
    founder, member = _edge_people(sql)
    if isinstance(body, dict) and "userId" in body and isinstance(body["userId"], str) and len(body["userId"]) == 36:
        body = {**body, "userId": member.id}
    rows_before = len(audit_rows(sql, member.id))
    profile = sql.execute("SELECT rank, roles FROM public.profiles WHERE id = %s", (member.id,))
    reply = client.post(raw=json.dumps(body).encode(), headers=founder.auth())
    assert reply.status < 500, reply
    if reply.status >= 400:
        assert set(reply.json) <= {"error", "message", "details"}
        assert len(audit_rows(sql, member.id)) == rows_before
        assert sql.execute("SELECT rank, roles FROM public.profiles WHERE id = %s", (member.id,)) == profile
    else:
        assert len(audit_rows(sql, member.id)) == rows_before + 1


_people: dict[str, object] = {}


def _edge_people(sql):
    if "founder" not in _people:
        _people["founder"], _people["member"] = sql.member("founder"), sql.member("scout")
    founder, member = _people["founder"], _people["member"]
    # a refusal for rank reasons is fine; keep the member below the founder between examples
    sql.execute("UPDATE public.profiles SET rank = 'scout' WHERE id = %s AND rank IN ('founder', 'pioneer')",
                (member.id,))
    return founder, member
