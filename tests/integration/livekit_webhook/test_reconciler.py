"""The stale-presence reconciler against the loopback Twirp RoomService, on its own database."""

from __future__ import annotations

import time
import uuid

import pytest

from tests import support
from tests.integration.livekit_webhook import events as ev
from tests.peers.livekit_twirp import LiveKitTwirpFake

NOW = time.time()
STALE = NOW - 20 * 60  # older than the 10-minute threshold
FRESH = NOW - 60


@pytest.fixture
def livekit(private_env):
    with LiveKitTwirpFake(support.LIVEKIT_KEY, support.LIVEKIT_SECRET) as fake:
        private_env.setenv("LIVEKIT_URL", fake.url)
        private_env.setenv("LIVEKIT_API_TIMEOUT_SECONDS", "2")
        from shared import config

        config.get_settings.cache_clear()
        yield fake


@pytest.fixture(autouse=True)
def only_this_tests_rows(private_sql):
    # The reconciler acts on every stale room in its database: start each test from none.
    private_sql.execute("DELETE FROM public.voice_presence")
    private_sql.execute("DELETE FROM public.livekit_rooms")


@pytest.fixture
def deliver(private_env):
    from functions.livekit_webhook.app import app
    from tests.support import Client

    client = Client(app)

    def send(event):
        body, headers = ev.signed(event)
        reply = client.post(raw=body, headers=headers)
        assert reply.status == 200, reply

    return send


def join(deliver, room, sid, at, identity=None):
    deliver(ev.participant_event("participant_joined", room, "RM_" + room, identity or f"u-{sid}", sid, at, at))


def rows(sql, room):
    return {r[0]: r[1] for r in sql.execute(
        "SELECT participant_sid, left_reason FROM public.voice_presence WHERE room_name = %s", (room,))}


def reconcile():
    from functions.livekit_webhook import reconciler

    return reconciler.run()


def test_absent_sids_are_closed_present_ones_kept(livekit, private_sql, deliver):
    # Given presence says three people are on the net for 20 minutes, LiveKit knows two
    room = f"net-{uuid.uuid4().hex[:8]}"
    for sid in ("PA_1", "PA_2", "PA_3"):
        join(deliver, room, sid, STALE)
    livekit.add_participant(room, "u-PA_1", sid="PA_1")
    livekit.add_participant(room, "u-PA_3", sid="PA_3")
    # When the reconciler runs
    summary = reconcile()
    # Then the missing one is closed and why is recorded; the others stay
    assert rows(private_sql, room) == {"PA_1": None, "PA_2": "absent_in_livekit", "PA_3": None}
    assert summary["closed"] == 1
    # And LiveKit was asked with a roomAdmin grant for exactly that room
    calls = livekit.calls_to("ListParticipants")
    assert [(c.room, c.status, c.grants.get("roomAdmin"), c.grants.get("room")) for c in calls] == [
        (room, 200, True, room)]


def test_young_presence_is_not_asked_about(livekit, private_sql, deliver):
    room = f"net-{uuid.uuid4().hex[:8]}"
    join(deliver, room, "PA_1", FRESH)
    assert reconcile()["rooms"] == 0
    assert livekit.calls == []
    assert rows(private_sql, room) == {"PA_1": None}


def test_a_session_that_joined_after_the_question_is_not_judged(livekit, private_sql, deliver):
    # A stale room, with one session that joined seconds ago and is not in LiveKit's (older) answer yet.
    room = f"net-{uuid.uuid4().hex[:8]}"
    join(deliver, room, "PA_old", STALE)
    join(deliver, room, "PA_new", time.time() - 5)
    livekit.add_participant(room, "u-PA_old", sid="PA_old")
    reconcile()
    assert rows(private_sql, room) == {"PA_old": None, "PA_new": None}


def test_room_livekit_does_not_know_is_closed(livekit, private_sql, deliver):
    # Given a room whose room_finished was lost
    room = f"net-{uuid.uuid4().hex[:8]}"
    deliver(ev.room_event("room_started", room, "RM_" + room, STALE))
    join(deliver, room, "PA_1", STALE)
    join(deliver, room, "PA_2", STALE)
    # When LiveKit no longer has it
    summary = reconcile()
    # Then every session is closed and the room is finished (the academy's trigger sees this)
    assert rows(private_sql, room) == {"PA_1": "room_not_found", "PA_2": "room_not_found"}
    assert private_sql.execute("SELECT finished_reason FROM public.livekit_rooms WHERE room_name = %s",
                               (room,)) == [("room_not_found",)]
    assert summary["roomsFinished"] == 1


def test_open_room_row_without_presence_is_checked_too(livekit, private_sql, deliver):
    gone, alive = (f"net-{uuid.uuid4().hex[:8]}" for _ in range(2))
    deliver(ev.room_event("room_started", gone, "RM_g", STALE))
    deliver(ev.room_event("room_started", alive, "RM_a", STALE))
    livekit.add_room(alive)
    reconcile()
    finished = dict(private_sql.execute("SELECT room_name, finished_reason FROM public.livekit_rooms"))
    assert finished == {gone: "room_not_found", alive: None}


@pytest.mark.parametrize("mode", ["refuse", "503"])
def test_livekit_down_closes_nothing_young(livekit, private_sql, deliver, mode):
    # Given presence 20 minutes old and presence 13 hours old (beyond the 12-hour hard maximum)
    room = f"net-{uuid.uuid4().hex[:8]}"
    join(deliver, room, "PA_young", STALE)
    join(deliver, room, "PA_ancient", NOW - 13 * 3600)
    # When LiveKit cannot answer
    livekit.set_down(mode)
    summary = reconcile()
    # Then only the session beyond the hard maximum age is closed
    assert rows(private_sql, room) == {"PA_young": None, "PA_ancient": "max_age_exceeded"}
    assert summary["unanswered"] == 1


def test_wrong_key_pair_is_no_answer_either(livekit, private_sql, deliver, private_env):
    room = f"net-{uuid.uuid4().hex[:8]}"
    join(deliver, room, "PA_1", STALE)
    private_env.setenv("LIVEKIT_API_SECRET", "not-the-livekit-secret-0123456789abcdef")
    from shared import config

    config.get_settings.cache_clear()
    summary = reconcile()
    assert [c.status for c in livekit.calls] == [401]
    assert rows(private_sql, room) == {"PA_1": None}
    assert summary["unanswered"] == 1


def test_slow_livekit_times_out_and_closes_nothing_young(livekit, private_sql, deliver, private_env):
    room = f"net-{uuid.uuid4().hex[:8]}"
    join(deliver, room, "PA_1", STALE)
    private_env.setenv("LIVEKIT_API_TIMEOUT_SECONDS", "0.5")
    from shared import config

    config.get_settings.cache_clear()
    livekit.delay = 1.5
    assert reconcile()["unanswered"] == 1
    assert rows(private_sql, room) == {"PA_1": None}


def test_scheduled_handler(livekit, private_sql, deliver):
    from functions.livekit_webhook import reconciler

    room = f"net-{uuid.uuid4().hex[:8]}"
    join(deliver, room, "PA_1", STALE)
    assert reconciler.handler({"source": "aws.scheduler"}, ev.LambdaContext())["closed"] == 1
