"""academy-request and academy-accept against real Postgres with the real migrations."""

from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import datetime, timezone

import jwt as pyjwt
import pytest
from livekit.api import TokenVerifier

from tests import support
from tests.support import Client


@pytest.fixture
def ask(env):
    from functions.academy.request import app

    return Client(app)


@pytest.fixture
def accept(env):
    from functions.academy.accept import app

    return Client(app)


def make_skill(sql) -> str:
    return str(sql.one("INSERT INTO public.skills (name) VALUES (%s) RETURNING id", (f"Skill {uuid.uuid4().hex[:8]}",)))


def certify(sql, skill: str, *members) -> None:
    for m in members:
        sql.execute("INSERT INTO public.certifications (user_id, skill_id) VALUES (%s, %s)", (m.id, skill))


def notifications(sql, type_: str, **payload) -> list[tuple]:
    """(recipient, payload) of queued notifications of one type whose payload contains `payload`."""
    return sql.execute("SELECT recipient_id::text, payload FROM public.notification_queue "
                       "WHERE type = %s AND payload @> %s::jsonb ORDER BY recipient_id", (type_, json.dumps(payload)))


def counts(sql, skill: str) -> dict[str, int]:
    return {
        "requests": sql.one("SELECT count(*) FROM public.instruction_requests WHERE skill_id = %s", (skill,)),
        "pods": sql.one("SELECT count(*) FROM public.sim_pods p JOIN public.instruction_requests r "
                        "ON r.id = p.request_id WHERE r.skill_id = %s", (skill,)),
        "notifications": sql.one("SELECT count(*) FROM public.notification_queue WHERE payload ->> 'skillId' = %s",
                                 (skill,)),
        "accepted": sql.one("SELECT count(*) FROM public.instruction_requests WHERE skill_id = %s "
                            "AND status <> 'PENDING'", (skill,)),
    }


@pytest.fixture
def academy(sql):
    """A skill, a cadet who wants it, and two certified guides."""
    skill = make_skill(sql)
    cadet = sql.member("scout", callsign=support.unique_callsign("Rookie"))
    g1, g2 = sql.member("voyager", callsign=support.unique_callsign("Mentor")), sql.member("founder")
    certify(sql, skill, g1, g2)
    return skill, cadet, [g1, g2]


def request_id(ask, skill, cadet) -> str:
    reply = ask.post({"skillId": skill}, cadet.auth())
    assert reply.status == 201, reply
    return reply.json["requestId"]


# --- academy-request ------------------------------------------------------------

# Given a skill with guides (one of them the cadet, one in the brig), when a cadet
# asks for training, then 201 PENDING and every other eligible guide is notified.
def test_request_is_pending_and_notifies_the_guides(ask, sql, academy):
    skill, cadet, guides = academy
    certify(sql, skill, cadet)
    brigged = sql.member("pioneer", ["brigged"])
    certify(sql, skill, brigged)

    reply = ask.post({"skillId": skill}, cadet.auth())
    assert reply.status == 201, reply
    assert set(reply.json) == {"requestId", "status"} and reply.json["status"] == "PENDING"
    rid = reply.json["requestId"]
    assert sql.execute("SELECT cadet_id::text, status, guide_id FROM public.instruction_requests WHERE id = %s",
                       (rid,)) == [(cadet.id, "PENDING", None)]
    queued = notifications(sql, "ACADEMY_REQUEST", requestId=rid)
    assert [r for r, _ in queued] == sorted(g.id for g in guides)
    assert queued[0][1]["cadetCallsign"] == cadet.callsign


def test_repeat_request_is_409_with_the_open_request_id(ask, sql, academy):
    skill, cadet, _ = academy
    rid = request_id(ask, skill, cadet)
    again = ask.post({"skillId": skill}, cadet.auth())
    assert again.status == 409 and again.json["error"] == "CONFLICT"
    assert again.json["details"] == {"requestId": rid, "status": "PENDING"}
    assert counts(sql, skill)["requests"] == 1
    # another skill is another request
    assert ask.post({"skillId": make_skill(sql)}, cadet.auth()).status == 201


def test_concurrent_requests_leave_one_open_request(ask, sql, academy):
    skill, cadet, _ = academy
    gate = threading.Barrier(6)
    replies: list = []

    def go() -> None:
        gate.wait()
        replies.append(ask.post({"skillId": skill}, cadet.auth()))

    threads = [threading.Thread(target=go) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(r.status for r in replies) == [201] + [409] * 5, replies
    winner = next(r for r in replies if r.status == 201).json["requestId"]
    assert {r.json["details"]["requestId"] for r in replies if r.status == 409} == {winner}


def test_unknown_skill_is_404_and_nothing_written(ask, sql):
    member = sql.member("scout")
    reply = ask.post({"skillId": str(uuid.uuid4())}, member.auth())
    assert reply.status == 404 and reply.json["error"] == "NOT_FOUND"
    assert sql.one("SELECT count(*) FROM public.instruction_requests WHERE cadet_id = %s", (member.id,)) == 0


def test_brigged_member_is_forbidden_and_nothing_written(ask, sql, academy):
    skill, _, _ = academy
    reply = ask.post({"skillId": skill}, sql.member("voyager", ["Medic", "brigged"]).auth())
    assert reply.status == 403 and reply.json["error"] == "FORBIDDEN"
    assert counts(sql, skill) == {"requests": 0, "pods": 0, "notifications": 0, "accepted": 0}


def test_a_lapsed_pending_request_does_not_block_a_new_one(ask, sql, academy, env):
    skill, cadet, _ = academy
    old = request_id(ask, skill, cadet)
    sql.execute("UPDATE public.instruction_requests SET created_at = now() - interval '25 hours' WHERE id = %s", (old,))
    new = request_id(ask, skill, cadet)
    assert new != old
    assert sql.one("SELECT status FROM public.instruction_requests WHERE id = %s", (old,)) == "EXPIRED"


# --- academy-accept ---------------------------------------------------------------

# Given a pending request, when a certified guide accepts, then a sim pod exists
# with a 2 h expiry, the answer carries the guide's token for the pod's room, and
# the cadet is notified.
def test_certified_guide_accepts_and_gets_a_pod(ask, accept, sql, academy):
    skill, cadet, (guide, _) = academy
    rid = request_id(ask, skill, cadet)
    before = time.time()

    reply = accept.post({"requestId": rid, "guideId": str(uuid.uuid4())}, guide.auth())
    assert reply.status == 200, reply
    body = reply.json
    assert body["simPodId"].startswith("sim-pod-") and body["roomName"] == body["simPodId"]
    expires = datetime.strptime(body["expiresAt"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()
    assert before + 7200 - 2 <= expires <= time.time() + 7200
    [connection] = body["connectionTokens"]
    assert connection["identity"] == guide.id and connection["role"] == "guide"
    claims = TokenVerifier(support.LIVEKIT_KEY, support.LIVEKIT_SECRET).verify(connection["token"])
    assert claims.identity == guide.id and claims.video.room == body["roomName"]
    assert claims.video.room_join and claims.video.can_publish and claims.video.can_subscribe
    assert json.loads(claims.metadata) == {"userId": guide.id, "rank": "voyager"}
    assert claims.name == guide.callsign

    assert sql.execute("SELECT status, guide_id::text, sim_pod_id FROM public.instruction_requests WHERE id = %s",
                       (rid,)) == [("ACCEPTED", guide.id, body["simPodId"])]
    assert sql.execute("SELECT cadet_id::text, guide_id::text, room_name, ended_at FROM public.sim_pods "
                       "WHERE id = %s", (body["simPodId"],)) == [(cadet.id, guide.id, body["roomName"], None)]
    [(recipient, payload)] = notifications(sql, "ACADEMY_ACCEPTED", requestId=rid)
    assert recipient == cadet.id
    assert payload["simPodId"] == body["simPodId"] and payload["guideCallsign"] == guide.callsign


def test_pod_lifetime_is_configurable(ask, accept, sql, academy, env):
    env.setenv("SIM_POD_TTL_SECONDS", "600")
    from shared import config

    config.get_settings.cache_clear()
    skill, cadet, (guide, _) = academy
    body = accept.post({"requestId": request_id(ask, skill, cadet)}, guide.auth()).json
    left = sql.one("SELECT extract(epoch FROM expires_at - now()) FROM public.sim_pods WHERE id = %s",
                   (body["simPodId"],))
    assert 590 <= left <= 600
    token = body["connectionTokens"][0]["token"]
    assert TokenVerifier(support.LIVEKIT_KEY, support.LIVEKIT_SECRET).verify(token).identity == guide.id
    # a token never outlives its pod
    assert pyjwt.decode(token, options={"verify_signature": False})["exp"] <= time.time() + 601


# Given a pending request, when ten certified guides accept at the same moment,
# then exactly one gets 200, the other nine 409, and there is one pod.
def test_ten_concurrent_accepts_one_winner(ask, accept, sql):
    skill = make_skill(sql)
    cadet = sql.member("scout")
    guides = [sql.member("voyager") for _ in range(10)]
    certify(sql, skill, *guides)
    rid = request_id(ask, skill, cadet)
    gate = threading.Barrier(len(guides))
    replies: dict[str, object] = {}

    def go(guide) -> None:
        gate.wait()
        replies[guide.id] = accept.post({"requestId": rid}, guide.auth())

    threads = [threading.Thread(target=go, args=(g,)) for g in guides]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    statuses = sorted(r.status for r in replies.values())
    assert statuses == [200] + [409] * 9, replies
    winner = next(gid for gid, r in replies.items() if r.status == 200)
    for r in replies.values():
        if r.status == 409:
            assert r.json["error"] == "CONFLICT" and r.json["details"] == {"requestId": rid, "status": "ACCEPTED"}
    assert sql.execute("SELECT guide_id::text FROM public.sim_pods WHERE request_id = %s", (rid,)) == [(winner,)]
    assert sql.one("SELECT guide_id::text FROM public.instruction_requests WHERE id = %s", (rid,)) == winner
    assert len(notifications(sql, "ACADEMY_ACCEPTED", requestId=rid)) == 1


def _refused_and_nothing_written(accept, sql, skill, rid, member, status, code):
    before = counts(sql, skill)
    reply = accept.post({"requestId": rid}, member.auth())
    assert reply.status == status and reply.json["error"] == code, reply
    assert counts(sql, skill) == before
    return reply


def test_guide_not_certified_for_the_skill_is_403(ask, accept, sql, academy):
    skill, cadet, _ = academy
    other_skill = make_skill(sql)
    outsider = sql.member("pioneer")
    certify(sql, other_skill, outsider)
    rid = request_id(ask, skill, cadet)
    _refused_and_nothing_written(accept, sql, skill, rid, outsider, 403, "FORBIDDEN")
    assert sql.one("SELECT status FROM public.instruction_requests WHERE id = %s", (rid,)) == "PENDING"


def test_cadet_cannot_accept_their_own_request(ask, accept, sql, academy):
    skill, cadet, _ = academy
    certify(sql, skill, cadet)
    rid = request_id(ask, skill, cadet)
    reply = _refused_and_nothing_written(accept, sql, skill, rid, cadet, 403, "FORBIDDEN")
    assert "own" in reply.json["message"]


def test_brigged_guide_is_forbidden(ask, accept, sql, academy):
    skill, cadet, _ = academy
    jailed = sql.member("founder", ["brigged"])
    certify(sql, skill, jailed)
    rid = request_id(ask, skill, cadet)
    _refused_and_nothing_written(accept, sql, skill, rid, jailed, 403, "FORBIDDEN")


def test_unknown_request_is_404(accept, sql, academy):
    skill, _, (guide, _) = academy
    _refused_and_nothing_written(accept, sql, skill, str(uuid.uuid4()), guide, 404, "NOT_FOUND")


@pytest.mark.parametrize("status", ["EXPIRED", "CANCELLED", "COMPLETED"])
def test_only_pending_requests_can_be_accepted(ask, accept, sql, academy, status):
    skill, cadet, (guide, _) = academy
    rid = request_id(ask, skill, cadet)
    sql.execute("UPDATE public.instruction_requests SET status = %s, closed_at = now() WHERE id = %s", (status, rid))
    reply = _refused_and_nothing_written(accept, sql, skill, rid, guide, 409, "CONFLICT")
    assert reply.json["details"]["status"] == status


def test_a_lapsed_pending_request_cannot_be_accepted(ask, accept, sql, academy):
    skill, cadet, (guide, _) = academy
    rid = request_id(ask, skill, cadet)
    sql.execute("UPDATE public.instruction_requests SET created_at = now() - interval '2 days' WHERE id = %s", (rid,))
    reply = _refused_and_nothing_written(accept, sql, skill, rid, guide, 409, "CONFLICT")
    assert reply.json["details"]["status"] == "EXPIRED"


def test_second_accept_by_another_guide_is_409(ask, accept, sql, academy):
    skill, cadet, (g1, g2) = academy
    rid = request_id(ask, skill, cadet)
    assert accept.post({"requestId": rid}, g1.auth()).status == 200
    _refused_and_nothing_written(accept, sql, skill, rid, g2, 409, "CONFLICT")
    # the winner asking again is no different
    _refused_and_nothing_written(accept, sql, skill, rid, g1, 409, "CONFLICT")


# --- academy-request's rate limit --------------------------------------------

def _skills(sql, n: int) -> list[str]:
    return [make_skill(sql) for _ in range(n)]


# Given a cadet who asked for three skills, when they ask for a fourth within
# ten minutes, then 429 RATE_LIMITED with Retry-After, and nothing is written:
# no request, no guide paged.
def test_a_fourth_request_within_the_window_is_rate_limited(ask, sql):
    cadet, guide = sql.member("scout"), sql.member("voyager")
    skills = _skills(sql, 4)
    certify(sql, skills[3], guide)
    for skill in skills[:3]:
        request_id(ask, skill, cadet)

    reply = ask.post({"skillId": skills[3]}, cadet.auth())

    assert reply.status == 429 and reply.json["error"] == "RATE_LIMITED", reply
    retry = int(reply.headers["retry-after"])
    assert 1 <= retry <= 600 and reply.json["details"] == {"retryAfter": retry}
    assert counts(sql, skills[3]) == {"requests": 0, "pods": 0, "notifications": 0, "accepted": 0}


# Given a cadet at the limit, when the window has passed, then they may ask again.
def test_the_limit_lifts_once_the_window_has_passed(ask, sql):
    cadet = sql.member("scout")
    skills = _skills(sql, 4)
    for skill in skills[:3]:
        request_id(ask, skill, cadet)
    assert ask.post({"skillId": skills[3]}, cadet.auth()).status == 429
    sql.execute("UPDATE public.instruction_requests SET created_at = created_at - interval '601 seconds' "
                "WHERE cadet_id = %s", (cadet.id,))
    assert ask.post({"skillId": skills[3]}, cadet.auth()).status == 201


# Given a cadet at the limit, when they repeat a request that is still open
# (a retry after a lost answer), then they learn its id: 409, not 429.
def test_a_repeat_at_the_limit_still_answers_the_open_request(ask, sql):
    cadet = sql.member("scout")
    skills = _skills(sql, 3)
    ids = [request_id(ask, skill, cadet) for skill in skills]
    reply = ask.post({"skillId": skills[0]}, cadet.auth())
    assert reply.status == 409 and reply.json["details"]["requestId"] == ids[0]


# Given ACADEMY_REQUEST_RATE_LIMIT=1 and a 60 s window, the second request is
# refused and Retry-After stays within the window.
def test_the_limit_and_window_come_from_the_settings(env, sql):
    from functions.academy.request import app

    env.setenv("ACADEMY_REQUEST_RATE_LIMIT", "1")
    env.setenv("ACADEMY_REQUEST_RATE_WINDOW_SECONDS", "60")
    ask = Client(app)
    cadet = sql.member("scout")
    first, second = _skills(sql, 2)
    request_id(ask, first, cadet)
    reply = ask.post({"skillId": second}, cadet.auth())
    assert reply.status == 429 and 1 <= int(reply.headers["retry-after"]) <= 60


# Given one cadet asking for eight skills at once, exactly three get through.
def test_concurrent_requests_cannot_race_past_the_limit(ask, sql):
    cadet = sql.member("scout")
    skills = _skills(sql, 8)
    statuses: list[int] = []

    def one(skill: str) -> None:
        statuses.append(ask.post({"skillId": skill}, cadet.auth()).status)

    threads = [threading.Thread(target=one, args=(s,)) for s in skills]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [201] * 3 + [429] * 5
    assert sql.one("SELECT count(*) FROM public.instruction_requests WHERE cadet_id = %s", (cadet.id,)) == 3


# Given a cadet whose three requests were made 500, 300 and 100 s ago, when
# they ask again, then Retry-After is when the oldest leaves the window:
# 100 s, not 500 (the newest) nor 600 (a whole window).
def test_retry_after_is_when_the_oldest_counted_request_leaves_the_window(ask, sql):
    cadet = sql.member("scout")
    skills = _skills(sql, 4)
    for skill, age in zip(skills, (500, 300, 100)):
        sql.execute("UPDATE public.instruction_requests SET created_at = now() - make_interval(secs => %s) "
                    "WHERE id = %s", (age, request_id(ask, skill, cadet)))
    reply = ask.post({"skillId": skills[3]}, cadet.auth())
    assert reply.status == 429, reply
    assert 99 <= int(reply.headers["retry-after"]) <= 101, reply.headers
