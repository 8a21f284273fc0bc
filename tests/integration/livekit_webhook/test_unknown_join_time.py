"""A leave or abort whose participant carries no join time closes its own session and nothing else.

LiveKit omits `joinedAt`/`joinedAtMs` when they are zero (protojson drops zero values). Such a
leave used to be taken as a session that began at the leave's time, so it closed the identity's
newer session as `duplicate_identity`.
"""

from __future__ import annotations

import time

import pytest

from tests.integration.livekit_webhook import events as ev


def deliver(hook, event: dict) -> None:
    body, headers = ev.signed(event)
    reply = hook.post(raw=body, headers=headers)
    assert reply.status == 200, reply


def without_join_time(event: dict) -> dict:
    event["participant"].pop("joinedAt")
    event["participant"].pop("joinedAtMs")
    return event


def rows(sql, room: str) -> dict[str, tuple]:
    return {sid: (left_at is None, reason) for sid, left_at, reason in sql.execute(
        "SELECT participant_sid, left_at, left_reason FROM public.voice_presence WHERE room_name = %s", (room,))}


@pytest.mark.parametrize("kind,reason", [("participant_left", "participant_left"),
                                         ("participant_connection_aborted", "connection_aborted")])
def test_leave_without_join_time_closes_only_its_own_session(hook, sql, room, kind, reason):
    now = float(int(time.time()))  # whole seconds: the rows are compared as whole seconds
    # Given an identity's older session (its join lost) and its newer, open session,
    deliver(hook, ev.participant_event("participant_joined", room, "RM_1", "user-1", "PA_new", now - 10, now - 10))
    # when the older session's leave arrives without a join time,
    deliver(hook, without_join_time(ev.participant_event(kind, room, "RM_1", "user-1", "PA_old", now - 5, now - 60)))
    # then the older session is closed by it and the newer one stays open.
    assert rows(sql, room) == {"PA_new": (True, None), "PA_old": (False, reason)}


def test_leave_without_join_time_keeps_the_join_time_it_had(hook, sql, room):
    now = float(int(time.time()))  # whole seconds: the rows are compared as whole seconds
    deliver(hook, ev.participant_event("participant_joined", room, "RM_1", "user-1", "PA_1", now - 30, now - 30))
    deliver(hook, ev.participant_event("participant_joined", room, "RM_1", "user-1", "PA_2", now - 10, now - 10))
    deliver(hook, without_join_time(ev.participant_event("participant_left", room, "RM_1", "user-1", "PA_2",
                                                         now - 5, now - 10)))
    # PA_2's leave closes PA_2 only; PA_1 was already ended by PA_2's join (LiveKit's one session per identity)
    found = sql.execute("SELECT participant_sid, extract(epoch FROM joined_at)::bigint, left_reason "
                        "FROM public.voice_presence WHERE room_name = %s ORDER BY participant_sid", (room,))
    assert found == [("PA_1", int(now - 30), "duplicate_identity"), ("PA_2", int(now - 10), "participant_left")]
