"""The presence reconciler works to its Lambda deadline whatever LiveKit's latency (issue 13).

LiveKit is the loopback Twirp fake (tests/peers/livekit_twirp.py) made slow:
every answer takes `delay` seconds, each within the per-call timeout, so
only the run's deadline (from the Lambda context's remaining time) can stop
it. Rooms LiveKit did not answer for by then are left exactly as they were
and lead the next run. No timing is asserted: only what was closed and what
was left.
"""

from __future__ import annotations

import uuid

from tests.integration.livekit_webhook import events as ev
from tests.integration.livekit_webhook.test_reconciler import (  # noqa: F401  (fixtures)
    STALE, deliver, join, livekit, only_this_tests_rows, rows)


def stale_rooms(deliver, count: int) -> list[str]:  # noqa: F811
    """`count` rooms, each with one member on record for 20 minutes whom LiveKit no longer has."""
    names = []
    for i in range(count):
        room = f"net-{uuid.uuid4().hex[:8]}"
        join(deliver, room, f"PA_{i}_{room}", STALE)
        names.append(room)
    return names


def open_rooms(sql, names) -> set[str]:
    return {r for r in names if any(reason is None for reason in rows(sql, r).values())}


def checked(sql) -> set[str]:
    return {r for (r,) in sql.execute("SELECT room_name FROM nexus_private.livekit_reconcile_checks")}


def reconcile_in_lambda(remaining_ms: int):
    from functions.livekit_webhook import reconciler

    return reconciler.handler({"source": "aws.scheduler"}, ev.LambdaContext(remaining_ms=remaining_ms))


def test_a_livekit_slower_than_the_budget_leaves_every_room_for_the_next_run(livekit, private_env, private_sql,
                                                                               deliver):  # noqa: F811
    from functions.livekit_webhook import reconciler

    private_env.setenv("LIVEKIT_API_TIMEOUT_SECONDS", "30")
    names = stale_rooms(deliver, 3)
    for room in names:
        livekit.add_room(room)  # LiveKit has the rooms, empty: everyone on record has left
    # Given LiveKit answers, but each answer takes 8 s, and the Lambda has 1 s beyond the margin
    livekit.delay = 8.0
    summary = reconcile_in_lambda(int((reconciler.MARGIN_SECONDS + 1) * 1000))
    # Then no room is judged, nobody is closed, nothing is marked as checked...
    assert summary["deferred"] == 3 and summary["closed"] == 0 and summary["unanswered"] == 0
    assert open_rooms(private_sql, names) == set(names)
    assert checked(private_sql) == set()
    # ...and when LiveKit is quick again, the next run judges them all.
    livekit.delay = 0.0
    summary = reconcile_in_lambda(60_000)
    assert summary["deferred"] == 0 and summary["closed"] == 3
    assert open_rooms(private_sql, names) == set()


def test_a_run_cut_short_judges_what_was_answered_and_the_rest_lead_the_next_run(livekit, private_env, private_sql,
                                                                                  deliver):  # noqa: F811
    from functions.livekit_webhook import reconciler

    private_env.setenv("LIVEKIT_API_TIMEOUT_SECONDS", "30")
    names = stale_rooms(deliver, 12)
    for room in names:
        livekit.add_room(room)
    # Given each LiveKit answer takes 1 s: ListRooms, then ListParticipants 8 at a time (3 s in all),
    # and a budget of 2.6 s: the rooms of the second wave cannot be answered in time.
    livekit.delay = 1.0
    summary = reconcile_in_lambda(int((reconciler.MARGIN_SECONDS + 2.6) * 1000))
    deferred = open_rooms(private_sql, names)
    assert summary["deferred"] >= 1 and summary["deferred"] == len(deferred)
    assert summary["closed"] == 12 - len(deferred)
    # The rooms judged are recorded as checked; the rest keep no check time...
    assert checked(private_sql) & deferred == set()
    # ...so they come first next time: a run that may ask about only that many rooms takes exactly them.
    livekit.delay = 0.0
    summary = reconciler.run(batch=len(deferred))
    assert summary["closed"] == len(deferred)
    assert open_rooms(private_sql, names) == set()
