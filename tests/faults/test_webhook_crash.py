"""PostgreSQL crashes in the middle of a webhook storm; LiveKit's retries carry every event through.

Eight senders deliver a simulated LiveKit's events (some twice, as LiveKit does
when an acknowledgement is lost) through the Lambda entry point, each retrying
like LiveKit (5 attempts, 1-30 s exponential backoff, scaled down; the last
attempt waits for PostgreSQL to accept connections, as LiveKit's unscaled
15 s window would outlast its restart). Halfway,
PostgreSQL is killed without a checkpoint and kept down, then recovers from
its WAL. Afterwards, row by row: every event was stored once and applied once,
every acknowledged event survived the crash, and presence equals the truth.
"""

from __future__ import annotations

import random
import threading

from tests.faults.conftest import RetryingSender, RetryPolicy, crash_and_restart, webhook_sender
from tests.integration.livekit_webhook import events as ev
from tests.integration.livekit_webhook.simulation import Simulation, observed

# Backoff waits 0.25, 0.5, 1, 2 s: a 3.75 s window, LiveKit's 15 s scaled by 1/4; the last attempt
# is not made before PostgreSQL accepts connections again (RetryPolicy.recovered).
DOWN_FOR = 1.0


def test_crash_mid_storm_loses_nothing_and_applies_nothing_twice(fault_env, fault_sql, crashable_pg):
    from functions.livekit_webhook import worker

    server, _ = crashable_pg
    # Given a storm of LiveKit events, a tenth of them delivered twice
    sim = Simulation(808, rooms=6, steps=30)
    rng = random.Random(809)
    items = []
    for event in sim.events:
        body, headers = ev.signed(event)
        items += [(event["id"], (body, headers))] * (2 if rng.random() < 0.1 else 1)
    rng.shuffle(items)
    half = threading.Event()
    sender = RetryingSender(webhook_sender(ev.LambdaContext()), RetryPolicy(scale=0.25, recovered=server.up))

    # When PostgreSQL crashes once a third of the deliveries were answered
    def crash_when_a_third_is_in() -> None:
        while len(sender.deliveries) < len(items) // 3:
            half.wait(0.01)
        crash.update(crash_and_restart(server, DOWN_FOR))

    crash: dict = {}
    crasher = threading.Thread(target=crash_when_a_third_is_in, daemon=True)
    crasher.start()
    sender.run(items, started=half)
    crasher.join(300)
    assert crash, "the crash never happened"
    acked_before_crash = {d.key for d in sender.deliveries[: len(items) // 3] if d.acked}

    # Then the crash was seen (503 with Retry-After), nobody gave up, and nothing answered 500
    counts = sender.status_counts()
    assert counts[503] > 0, counts
    assert set(counts) <= {200, 503}, counts
    assert sender.retry_after_missing == []
    assert sender.given_up() == []

    # Events a lock conflict deferred are the retry worker's, as in production
    fault_sql.execute("UPDATE nexus_private.livekit_webhook_jobs SET next_run_at = now() WHERE status = 'pending'")
    worker.run("faults-storm", budget_seconds=30, purge=False)

    # Row by row: each event stored exactly once and applied (done), acknowledged ones included
    jobs = {r[0]: (r[1], r[2]) for r in fault_sql.execute(
        "SELECT event_id, status, count(*) OVER (PARTITION BY event_id) FROM nexus_private.livekit_webhook_jobs "
        "WHERE room_name LIKE %s", (f"storm-{sim.tag}-%",))}
    for event in sim.events:
        assert jobs.get(event["id"]) == ("done", 1), (event["id"], event["event"], jobs.get(event["id"]))
    assert len(jobs) == len(sim.events)
    assert acked_before_crash and acked_before_crash <= set(jobs)

    # ... and presence is the truth, session by session: nothing applied twice, nothing missing
    truth, seen = sim.truth(), observed(fault_sql, sim.tag)
    for sid, expected in truth.items():
        assert seen.get(sid) == expected, (sid, expected, seen.get(sid))
    assert set(seen) == set(truth)
    assert fault_sql.one("SELECT count(*) FROM public.voice_presence WHERE room_name LIKE %s",
                         (f"storm-{sim.tag}-%",)) == len(truth)
