"""Sim-pod expiry against a loopback fake of LiveKit's Twirp RoomService.

The expiry job acts on every due pod and lapsed request in its database, so
this module runs on a database of its own in the session's cluster.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid

import pytest
from livekit import api

from tests import support
from tests.peers.livekit_twirp import LiveKitTwirpFake
from tests.support import Client


@pytest.fixture(scope="module")
def own_database(pg):
    with support.migrated_database(pg, "nexus_simpod") as url:
        yield url


@pytest.fixture(scope="module")
def db(own_database):
    d = support.Db(own_database)
    yield d
    d.close()


@pytest.fixture
def livekit():
    with LiveKitTwirpFake(support.LIVEKIT_KEY, support.LIVEKIT_SECRET, lifetime=60) as fake:
        yield fake


@pytest.fixture
def setup(env, own_database, db, livekit):
    """Functions pointed at this module's database and at the fake LiveKit, with no earlier test's work left due."""
    from shared import config
    from shared import db as shared_db

    db.execute("UPDATE public.sim_pods SET ended_at = now(), end_reason = 'CANCELLED' WHERE ended_at IS NULL")
    db.execute("UPDATE public.sim_pods SET room_delete_due_at = NULL WHERE room_delete_due_at IS NOT NULL")
    db.execute("UPDATE public.instruction_requests SET status = 'CANCELLED', closed_at = now() "
               "WHERE status IN ('PENDING', 'ACCEPTED')")

    env.setenv("DATABASE_URL", own_database)
    env.setenv("LIVEKIT_URL", livekit.url)
    config.get_settings.cache_clear()
    shared_db.set_database(None)
    yield env
    shared_db.set_database(None)


def refresh_settings() -> None:
    from shared import config

    config.get_settings.cache_clear()


def run_expiry() -> dict:
    from functions.academy import expiry

    return expiry.run()


def open_pod(db) -> dict:
    """A live pod opened through the real endpoints, with both members on LiveKit and in presence."""
    from functions.academy.accept import app as accept_app
    from functions.academy.request import app as request_app

    skill = str(db.one("INSERT INTO public.skills (name) VALUES (%s) RETURNING id", (f"Exp {uuid.uuid4().hex[:8]}",)))
    cadet, guide = db.member("scout"), db.member("voyager")
    db.execute("INSERT INTO public.certifications (user_id, skill_id) VALUES (%s, %s)", (guide.id, skill))
    rid = Client(request_app).post({"skillId": skill}, cadet.auth()).json["requestId"]
    reply = Client(accept_app).post({"requestId": rid}, guide.auth())
    assert reply.status == 200, reply
    pod = {"id": reply.json["simPodId"], "room": reply.json["roomName"], "request": rid, "cadet": cadet,
           "guide": guide}
    for member in (cadet, guide):
        db.execute("INSERT INTO public.voice_presence (room_name, participant_identity, participant_sid, user_id, "
                   "joined_at, last_event_at) VALUES (%s, %s, %s, %s, now() - interval '5 minutes', now())",
                   (pod["room"], member.id, f"PA_{uuid.uuid4().hex[:10]}", member.id))
    return pod


def expire(db, pod: dict) -> None:
    db.execute("UPDATE public.sim_pods SET created_at = now() - interval '3 hours', "
               "expires_at = now() - interval '1 minute' WHERE id = %s", (pod["id"],))


def state(db, pod: dict) -> dict:
    ended_at, reason = db.execute("SELECT ended_at, end_reason FROM public.sim_pods WHERE id = %s", (pod["id"],))[0]
    return {
        "ended": ended_at is not None,
        "reason": reason,
        "request": db.one("SELECT status FROM public.instruction_requests WHERE id = %s", (pod["request"],)),
        "open_presence": db.one("SELECT count(*) FROM public.voice_presence WHERE room_name = %s AND left_at IS NULL",
                                (pod["room"],)),
    }


LIVE = {"ended": False, "reason": None, "request": "ACCEPTED", "open_presence": 2}


# Given an expired pod whose room is live on LiveKit and a pod still running,
# when the schedule runs, then the expired pod's room is deleted with a token
# granting roomCreate, the pod ends, presence closes and the request completes;
# the running pod is untouched.
def test_expired_pod_is_ended_after_its_room_is_deleted(setup, db, livekit):
    due, running = open_pod(db), open_pod(db)
    expire(db, due)
    for pod in (due, running):
        livekit.add_participant(pod["room"], pod["cadet"].id)
        livekit.add_participant(pod["room"], pod["guide"].id)

    summary = run_expiry()

    assert summary["podsEnded"] == 1 and summary["podsDeferred"] == 0
    [call] = livekit.calls_to("DeleteRoom")
    assert call.room == due["room"] and call.status == 200 and call.grants.get("roomCreate") is True
    assert due["room"] not in livekit.rooms and running["room"] in livekit.rooms
    assert state(db, due) == {"ended": True, "reason": "EXPIRED", "request": "COMPLETED", "open_presence": 0}
    assert db.one("SELECT DISTINCT left_reason FROM public.voice_presence WHERE room_name = %s",
                  (due["room"],)) == "sim_pod_expired"
    assert state(db, running) == LIVE

    from functions.livekit_token.app import app as token_app

    reply = Client(token_app).post({"roomName": due["room"]}, due["cadet"].auth())
    assert reply.status == 403

    # a second run finds nothing due and calls LiveKit no more
    assert run_expiry()["podsDue"] == 0
    assert len(livekit.calls_to("DeleteRoom")) == 1


# Given LiveKit unreachable (refusing connections, or answering 503), when the
# schedule runs, then nothing is marked ended; once LiveKit is back the next run finishes it.
@pytest.mark.parametrize("outage", ["refuse", "503"])
def test_with_livekit_down_the_pod_stays_due_until_the_next_run(setup, db, livekit, outage):
    pod = open_pod(db)
    expire(db, pod)
    livekit.add_participant(pod["room"], pod["cadet"].id)
    livekit.set_down(outage)

    summary = run_expiry()
    assert summary["podsEnded"] == 0 and summary["podsDeferred"] == 1
    assert state(db, pod) == LIVE

    livekit.set_down(None)
    assert run_expiry()["podsEnded"] == 1
    assert pod["room"] not in livekit.rooms
    assert state(db, pod) == {"ended": True, "reason": "EXPIRED", "request": "COMPLETED", "open_presence": 0}


def test_a_key_pair_livekit_refuses_ends_nothing(setup, db, livekit):
    pod = open_pod(db)
    expire(db, pod)
    livekit.add_room(pod["room"])
    setup.setenv("LIVEKIT_API_SECRET", "a-secret-livekit-does-not-know-0123456789abcdef")
    refresh_settings()

    assert run_expiry()["podsDeferred"] == 1
    assert [c.status for c in livekit.calls_to("DeleteRoom")] == [401]
    assert state(db, pod) == LIVE
    assert pod["room"] in livekit.rooms


def test_a_room_livekit_no_longer_has_still_ends_the_pod(setup, db, livekit):
    pod = open_pod(db)
    expire(db, pod)  # nobody ever joined on LiveKit: the room does not exist there

    assert run_expiry()["podsEnded"] == 1
    assert [c.status for c in livekit.calls_to("DeleteRoom")] == [404]
    assert state(db, pod)["ended"] is True


def test_pending_requests_expire_after_the_configured_age(setup, db, livekit):
    setup.setenv("ACADEMY_REQUEST_MAX_AGE_SECONDS", "3600")
    refresh_settings()
    from functions.academy.request import app as request_app

    skill = str(db.one("INSERT INTO public.skills (name) VALUES (%s) RETURNING id", (f"Age {uuid.uuid4().hex[:8]}",)))
    old, fresh = db.member("scout"), db.member("scout")
    old_id = Client(request_app).post({"skillId": skill}, old.auth()).json["requestId"]
    fresh_id = Client(request_app).post({"skillId": skill}, fresh.auth()).json["requestId"]
    db.execute("UPDATE public.instruction_requests SET created_at = now() - interval '61 minutes' WHERE id = %s",
               (old_id,))

    summary = run_expiry()
    assert summary["requestsExpired"] == 1
    assert db.one("SELECT status FROM public.instruction_requests WHERE id = %s", (old_id,)) == "EXPIRED"
    assert db.one("SELECT status FROM public.instruction_requests WHERE id = %s", (fresh_id,)) == "PENDING"
    assert livekit.calls == []  # nothing due: LiveKit is not asked


# --- LiveKit closes a pod's room early ------------------------------------------

def webhook(event: dict) -> int:
    from functions.livekit_webhook.app import app as hook_app

    body = json.dumps(event, separators=(",", ":")).encode()
    digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
    signature = api.AccessToken(support.LIVEKIT_KEY, support.LIVEKIT_SECRET).with_sha256(digest).to_jwt()
    reply = Client(hook_app).post(raw=body, headers={"content-type": "application/webhook+json",
                                                     "authorization": signature})
    return reply.status


def room_event(kind: str, room: str, sid: str) -> dict:
    now = int(time.time())
    return {"event": kind, "id": f"EV_{uuid.uuid4().hex[:16]}", "createdAt": str(now),
            "room": {"sid": sid, "name": room, "creationTime": str(now - 60)}}


# Given a live pod, when LiveKit reports room_finished for its room (after or
# without a room_started), then the pod ends early and its members are refused tokens.
@pytest.mark.parametrize("started_first", [True, False])
def test_room_finished_webhook_ends_the_pod_early(setup, db, livekit, started_first):
    pod = open_pod(db)
    sid = f"RM_{uuid.uuid4().hex[:12]}"
    if started_first:
        assert webhook(room_event("room_started", pod["room"], sid)) == 200
        assert state(db, pod) == LIVE
    assert webhook(room_event("room_finished", pod["room"], sid)) == 200

    after = state(db, pod)
    assert after["ended"] and after["reason"] == "ROOM_FINISHED" and after["request"] == "COMPLETED"
    assert after["open_presence"] == 0

    from functions.livekit_token.app import app as token_app

    assert Client(token_app).post({"roomName": pod["room"]}, pod["guide"].auth()).status == 403
    expire(db, pod)
    summary = run_expiry()
    # the pod is not due again; its (already closed) room gets the delete every ended pod gets
    assert summary["podsDue"] == 0 and summary["roomsDue"] == 1 and summary["roomsDeleted"] == 1
    assert [c.room for c in livekit.calls_to("DeleteRoom")] == [pod["room"]]


def test_room_finished_for_a_voice_net_touches_no_pod(setup, db, livekit):
    pod = open_pod(db)
    net = db.net()
    assert webhook(room_event("room_finished", net, "RM_net")) == 200
    assert state(db, pod) == LIVE


def test_the_scheduled_entry_point_runs_one_pass(setup, db, livekit):
    from functions.academy.expiry import handler

    pod = open_pod(db)
    expire(db, pod)
    summary = handler({"source": "aws.scheduler"}, None)
    assert summary == {"requestsExpired": 0, "podsDue": 1, "podsEnded": 1, "podsDeferred": 0,
                       "roomsDue": 0, "roomsDeleted": 0, "roomsDeferred": 0}
    assert state(db, pod)["ended"] is True


# --- rooms of pods that ended -----------------------------------------------------

def later(db, pod: dict, minutes: int) -> None:
    """Move the pod's whole history `minutes` into the past, as if that much time went by."""
    db.execute("UPDATE public.sim_pods SET created_at = created_at - make_interval(mins => %(m)s), "
               "expires_at = expires_at - make_interval(mins => %(m)s), "
               "ended_at = ended_at - make_interval(mins => %(m)s), "
               "room_deleted_at = room_deleted_at - make_interval(mins => %(m)s), "
               "room_delete_due_at = room_delete_due_at - make_interval(mins => %(m)s) WHERE id = %(id)s",
               {"m": minutes, "id": pod["id"]})


def deletes(livekit) -> list[tuple[str, int]]:
    return [(c.room, c.status) for c in livekit.calls_to("DeleteRoom")]


# Given a pod LiveKit closed early (room_finished), when a member joins its
# room again with a token minted before the end (LiveKit re-creates the room),
# then the next run deletes that room, and once every such token has lapsed a
# last delete closes it for good; after that LiveKit is not asked again.
def test_a_room_reopened_after_an_early_end_is_deleted(setup, db, livekit):
    pod = open_pod(db)
    assert webhook(room_event("room_finished", pod["room"], "RM_first")) == 200
    assert state(db, pod)["ended"] is True
    livekit.add_participant(pod["room"], pod["cadet"].id)  # the cadet's earlier token still opens it

    summary = run_expiry()
    assert summary["roomsDue"] == 1 and summary["roomsDeleted"] == 1 and summary["roomsDeferred"] == 0
    assert deletes(livekit) == [(pod["room"], 200)] and pod["room"] not in livekit.rooms
    assert run_expiry()["roomsDue"] == 0  # not due again while tokens may still open it

    livekit.add_participant(pod["room"], pod["guide"].id)  # the guide comes back with a LiveKit-refreshed token
    later(db, pod, 12)  # every token minted or refreshed before the end has lapsed
    assert run_expiry()["roomsDeleted"] == 1
    assert deletes(livekit)[-1] == (pod["room"], 200) and pod["room"] not in livekit.rooms

    later(db, pod, 60)
    assert run_expiry()["roomsDue"] == 0
    assert len(deletes(livekit)) == 2
    assert db.execute("SELECT room_deleted_at IS NOT NULL, room_delete_due_at FROM public.sim_pods WHERE id = %s",
                      (pod["id"],)) == [(True, None)]


# Given an early-ended pod whose room must be deleted, when LiveKit is down,
# then the delete stays due and is recorded only once LiveKit confirms it.
@pytest.mark.parametrize("outage", ["refuse", "503"])
def test_with_livekit_down_an_ended_pods_room_stays_due(setup, db, livekit, outage):
    pod = open_pod(db)
    assert webhook(room_event("room_finished", pod["room"], "RM_x")) == 200
    livekit.add_participant(pod["room"], pod["cadet"].id)
    livekit.set_down(outage)

    summary = run_expiry()
    assert summary["roomsDue"] == 1 and summary["roomsDeleted"] == 0 and summary["roomsDeferred"] == 1
    assert db.one("SELECT room_deleted_at FROM public.sim_pods WHERE id = %s", (pod["id"],)) is None

    livekit.set_down(None)
    assert run_expiry()["roomsDeleted"] == 1
    assert pod["room"] not in livekit.rooms


# Given a pod past expiry, when the schedule deletes its room and ends it,
# then one more delete follows once tokens LiveKit refreshed for its members
# have lapsed, and none after that.
def test_an_expired_pods_room_is_deleted_again_after_the_token_window(setup, db, livekit):
    pod = open_pod(db)
    expire(db, pod)
    livekit.add_participant(pod["room"], pod["cadet"].id)

    first = run_expiry()
    assert first["podsEnded"] == 1 and first["roomsDue"] == 0
    assert run_expiry()["roomsDue"] == 0
    later(db, pod, 12)
    assert run_expiry()["roomsDeleted"] == 1
    assert [room for room, _ in deletes(livekit)] == [pod["room"], pod["room"]]
    later(db, pod, 60)
    assert run_expiry()["roomsDue"] == 0 and len(deletes(livekit)) == 2


# Given more ended pods than one run handles, when the schedule runs, then it
# deletes a batch and leaves the rest for the next run.
def test_room_deletes_are_batched(setup, db, livekit):
    setup.setenv("SIM_POD_EXPIRY_BATCH", "2")
    refresh_settings()
    pods = [open_pod(db) for _ in range(3)]
    for i, pod in enumerate(pods):
        assert webhook(room_event("room_finished", pod["room"], f"RM_{i}")) == 200
    assert run_expiry()["roomsDeleted"] == 2
    assert run_expiry()["roomsDeleted"] == 1
    assert sorted(room for room, _ in deletes(livekit)) == sorted(p["room"] for p in pods)
