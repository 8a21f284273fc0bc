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
    private_sql.execute("DELETE FROM nexus_private.livekit_reconcile_checks")


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


def reconcile(**kw):
    """The closing half of a run (discovery, which asks LiveKit about every room, is tested below)."""
    from functions.livekit_webhook import reconciler

    return reconciler.run(discovery=False, **kw)


def leftover(deliver, room, at):
    """A room row whose room_finished never arrived."""
    deliver(ev.room_event("room_started", room, "RM_" + room, at))


def finished(sql):
    return dict(sql.execute("SELECT room_name, finished_reason FROM public.livekit_rooms"))


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
    # When LiveKit no longer has it (and, as livekit-server does, lists no participants for it)
    summary = reconcile()
    # Then every session is closed and the room is finished (the academy's trigger sees this)
    assert rows(private_sql, room) == {"PA_1": "room_not_found", "PA_2": "room_not_found"}
    assert private_sql.execute("SELECT finished_reason FROM public.livekit_rooms WHERE room_name = %s",
                               (room,)) == [("room_not_found",)]
    assert summary["roomsFinished"] == 1
    # And ListRooms said so: its participants were never asked for; nothing of it is left to check
    assert [(c.status, c.grants.get("roomList")) for c in livekit.calls_to("ListRooms")] == [(200, True)]
    assert livekit.calls_to("ListParticipants") == []
    assert private_sql.execute("SELECT room_name FROM nexus_private.livekit_reconcile_checks") == []
    assert reconcile()["rooms"] == 0


def test_empty_room_livekit_still_has_closes_everyone_but_not_the_room(livekit, private_sql, deliver):
    # Given a net LiveKit keeps open while empty (its empty timeout), presence says two are on it
    room = f"net-{uuid.uuid4().hex[:8]}"
    leftover(deliver, room, STALE)
    join(deliver, room, "PA_1", STALE)
    join(deliver, room, "PA_2", STALE)
    livekit.add_room(room)
    # When the reconciler runs
    summary = reconcile()
    # Then both sessions are closed as absent, and the room, which exists, stays open
    assert rows(private_sql, room) == {"PA_1": "absent_in_livekit", "PA_2": "absent_in_livekit"}
    assert finished(private_sql) == {room: None}
    assert summary["roomsFinished"] == 0
    # Once LiveKit has closed it, the next run finishes the row
    livekit.remove_room(room)
    assert reconcile()["roomsFinished"] == 1
    assert finished(private_sql) == {room: "room_not_found"}


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


# -- fairness: rooms that stay stale run after run never starve the others ---------------------------


def test_leftover_room_rows_beyond_the_batch_do_not_starve_stale_presence(livekit, private_sql, deliver):
    # Given more leftover room rows (two days old, rooms LiveKit still keeps, empty) than a run takes
    leftovers = [f"net-left-{i}-{uuid.uuid4().hex[:6]}" for i in range(4)]
    for name in leftovers:
        leftover(deliver, name, NOW - 2 * 86400)
        livekit.add_room(name)
    # ... and a net whose only member left two hours ago without LiveKit telling us
    net = f"net-{uuid.uuid4().hex[:8]}"
    join(deliver, net, "PA_ghost", NOW - 2 * 3600)
    livekit.add_room(net)
    # When the reconciler takes a batch of three
    summary = reconcile(batch=3)
    # Then the net with stale presence is among them and its ghost is closed
    assert rows(private_sql, net) == {"PA_ghost": "absent_in_livekit"}
    assert summary["rooms"] == 3 and summary["closed"] == 1


def test_with_livekit_down_leftovers_do_not_starve_the_hard_maximum(livekit, private_sql, deliver):
    # Given leftover room rows older than anything, more than a run takes, and a 13-hour-old session
    for i in range(4):
        leftover(deliver, f"net-left-{i}-{uuid.uuid4().hex[:6]}", NOW - 3 * 86400)
    net = f"net-{uuid.uuid4().hex[:8]}"
    join(deliver, net, "PA_young", STALE)
    join(deliver, net, "PA_ancient", NOW - 13 * 3600)
    # When LiveKit is down and the reconciler takes a batch of three
    livekit.set_down("503")
    summary = reconcile(batch=3)
    # Then the session beyond the hard maximum is closed, nothing young is, and no room row is finished
    assert rows(private_sql, net) == {"PA_young": None, "PA_ancient": "max_age_exceeded"}
    assert set(finished(private_sql).values()) == {None}
    assert summary["unanswered"] == 3


def test_rooms_asked_least_recently_come_first(livekit, private_sql, deliver):
    # Given four nets whose members are really there for hours (stale, and they stay so)
    busy = [f"net-busy-{i}-{uuid.uuid4().hex[:6]}" for i in range(4)]
    for i, name in enumerate(busy):
        join(deliver, name, f"PA_b{i}", NOW - (5 + i) * 3600)
        livekit.add_participant(name, f"u-PA_b{i}", sid=f"PA_b{i}")
    # ... and a net whose member left an hour ago unnoticed (the youngest of the stale rooms)
    quiet = f"net-{uuid.uuid4().hex[:8]}"
    join(deliver, quiet, "PA_ghost", NOW - 3600)
    livekit.add_room(quiet)
    # When the reconciler runs three times taking two rooms each
    asked = []
    for _ in range(3):
        before = len(livekit.calls_to("ListParticipants"))
        reconcile(batch=2)
        asked.append({c.room for c in livekit.calls_to("ListParticipants")[before:]})
    # Then every room was asked about once before any was asked again, and the ghost is closed
    assert asked[0] | asked[1] == set(busy) and quiet in asked[2]
    assert rows(private_sql, quiet) == {"PA_ghost": "absent_in_livekit"}
    assert all(rows(private_sql, name) == {f"PA_b{i}": None} for i, name in enumerate(busy))


def test_reconciler_checks_of_rooms_closed_otherwise_are_purged(livekit, private_sql, deliver):
    # Given a net asked about (its member is there), whose member then leaves through the webhook
    room = f"net-{uuid.uuid4().hex[:8]}"
    join(deliver, room, "PA_1", STALE)
    livekit.add_participant(room, "u-PA_1", sid="PA_1")
    reconcile()
    assert private_sql.execute("SELECT room_name FROM nexus_private.livekit_reconcile_checks") == [(room,)]
    deliver(ev.participant_event("participant_left", room, "RM_" + room, "u-PA_1", "PA_1", NOW, STALE))
    # When the worker's purge runs a day later
    private_sql.execute("UPDATE nexus_private.livekit_reconcile_checks SET checked_at = now() - interval '25 hours'")
    from shared import db

    db.call("livekit_webhook_jobs_purge")
    # Then the check is forgotten
    assert private_sql.execute("SELECT room_name FROM nexus_private.livekit_reconcile_checks") == []


# Given LiveKit holding a brigged scout (publishing) and a recorder bot in a net, none of whose
# participant_joined ever reached us, when the reconciler runs, then both get presence rows and
# the scout is judged like any join: removed; the bot, not a member, is left alone.
def test_participants_livekit_has_and_we_lack_are_recorded_and_judged(livekit, private_sql):
    private_sql.execute("DELETE FROM nexus_private.livekit_access_jobs")
    scout = private_sql.member("scout", ["brigged"])
    room = private_sql.net()
    livekit.add_participant(room, scout.id, sid="PA_scout", permission={
        "can_subscribe": True, "can_publish": True, "can_publish_data": True, "can_publish_sources": ["MICROPHONE"]})
    livekit.add_participant(room, "recorder-bot", sid="PA_bot")

    summary = reconciler_run()

    assert (summary["adopted"], summary["judged"]) == (2, 1)
    assert livekit.participant(room, scout.id) is None and livekit.participant(room, "recorder-bot") is not None
    found = private_sql.execute("SELECT participant_sid, user_id::text FROM public.voice_presence "
                                "WHERE room_name = %s ORDER BY participant_sid", (room,))
    assert found == [("PA_bot", None), ("PA_scout", scout.id)]
    assert private_sql.one("SELECT count(*) FROM nexus_private.livekit_access_jobs WHERE room_name = %s",
                           (room,)) == 0

    # a second run finds nothing new
    assert reconciler_run()["adopted"] == 0


def reconciler_run():
    from functions.livekit_webhook import reconciler

    return reconciler.run()


# Given two rooms, the first of which LiveKit cannot list the participants of (that room's node
# answers 503 or times out, run after run), and in the second a brigged scout whose join was lost,
# when the reconciler runs, then the scout is still found and removed: one room that does not
# answer does not hide every room LiveKit lists after it.
def test_a_room_that_does_not_answer_does_not_hide_the_rooms_after_it(livekit, private_sql):
    from shared.livekit_rooms import LiveKitUnavailable, RoomServiceClient

    private_sql.execute("DELETE FROM nexus_private.livekit_access_jobs")
    silent = private_sql.net()
    livekit.add_participant(silent, "recorder-bot", sid="PA_silent_bot")
    scout = private_sql.member("scout", ["brigged"])
    room = private_sql.net()
    livekit.add_participant(room, scout.id, sid="PA_scout_after", permission={
        "can_subscribe": True, "can_publish": True, "can_publish_data": True, "can_publish_sources": ["MICROPHONE"]})

    class OneRoomSilent(RoomServiceClient):
        def participants(self, name, **kwargs):
            if name == silent:
                raise LiveKitUnavailable("LiveKit answered 503 unavailable", status=503)
            return super().participants(name, **kwargs)

    from functions.livekit_webhook import reconciler

    summary = reconciler.run(OneRoomSilent(livekit.url, support.LIVEKIT_KEY, support.LIVEKIT_SECRET))

    assert (summary["adopted"], summary["judged"]) == (1, 1)
    assert livekit.participant(room, scout.id) is None
    assert livekit.participant(silent, "recorder-bot") is not None


# Given a participant whose name and metadata carry a NUL (another app's token: a JSON string may
# hold \u0000, Postgres text may not), beside a brigged scout whose join was lost, when the
# reconciler runs, then it does not fail: the scout is found and removed, the other is recorded
# without the NUL.
def test_a_participant_with_a_nul_in_its_name_does_not_stop_discovery(livekit, private_sql):
    private_sql.execute("DELETE FROM nexus_private.livekit_access_jobs")
    room = private_sql.net()
    livekit.add_participant(room, "other-app-bot", sid="PA_nul_bot", name="bot\x00name", metadata="m\x00")
    scout = private_sql.member("scout", ["brigged"])
    livekit.add_participant(room, scout.id, sid="PA_scout_nul", permission={
        "can_subscribe": True, "can_publish": True, "can_publish_data": True, "can_publish_sources": ["MICROPHONE"]})

    summary = reconciler_run()

    assert summary["judged"] == 1
    assert livekit.participant(room, scout.id) is None
    assert livekit.participant(room, "other-app-bot") is not None
