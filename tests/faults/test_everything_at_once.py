"""Everything at once: a webhook storm, a push fan-out against a misbehaving push service, the
reconciler and sim-pod expiry with LiveKit's RoomService down, and PostgreSQL crashing under all of it.

Each part has its own focused suite (tests/integration, and test_webhook_crash.py /
test_fanout_crash.py here); this one checks that they do not trip over each other:
while LiveKit is down the scheduled jobs close nothing they cannot prove (only
presence past the hard maximum age) and defer the expired pod; the crash hits
whatever is running; once LiveKit is back the pod ends. Afterwards, row by row:
presence equals the simulated truth, every webhook event is stored and applied
once, every push reached its device exactly once, the pod ended after its room
was deleted.
"""

from __future__ import annotations

import os
import random
import threading
import time
import uuid

from tests import support
from tests.faults.conftest import (
    RetryingSender,
    RetryPolicy,
    ScheduledLoop,
    crash_and_restart,
    open_deliveries,
    wait_until,
    webhook_sender,
)
from tests.faults.test_fanout_crash import _arrange, _assert_delivered, _rows
from tests.integration.livekit_webhook import events as ev
from tests.integration.livekit_webhook.simulation import Simulation, observed
from tests.peers.livekit_twirp import LiveKitTwirpFake
from tests.peers.push_service import PushService
from tests.support import Client


def _expired_pod(sql) -> dict:
    """A live sim pod opened through the real endpoints, past its expiry, both members in presence."""
    from functions.academy.accept import app as accept_app
    from functions.academy.request import app as request_app

    skill = str(sql.one("INSERT INTO public.skills (name) VALUES (%s) RETURNING id", (f"F {uuid.uuid4().hex[:8]}",)))
    cadet, guide = sql.member("scout"), sql.member("voyager")
    sql.execute("INSERT INTO public.certifications (user_id, skill_id) VALUES (%s, %s)", (guide.id, skill))
    rid = Client(request_app).post({"skillId": skill}, cadet.auth()).json["requestId"]
    reply = Client(accept_app).post({"requestId": rid}, guide.auth())
    assert reply.status == 200, reply
    pod = {"id": reply.json["simPodId"], "room": reply.json["roomName"], "request": rid}
    for member in (cadet, guide):
        sql.execute("INSERT INTO public.voice_presence (room_name, participant_identity, participant_sid, user_id, "
                    "joined_at, last_event_at) VALUES (%s, %s, %s, %s, now() - interval '5 minutes', now())",
                    (pod["room"], member.id, f"PA_{uuid.uuid4().hex[:10]}", member.id))
    sql.execute("UPDATE public.sim_pods SET created_at = now() - interval '3 hours', "
                "expires_at = now() - interval '1 minute' WHERE id = %s", (pod["id"],))
    return pod


def test_everything_at_once(push_fault_env, fault_sql, crashable_pg, vapid_pair):
    from functions.academy import expiry
    from functions.livekit_webhook import reconciler, worker
    from functions.notifications.fanout import handler as fanout
    from shared import config

    server, _ = crashable_pg
    with LiveKitTwirpFake(support.LIVEKIT_KEY, support.LIVEKIT_SECRET, lifetime=180) as livekit, \
            PushService(application_server_key=vapid_pair[0], latency=0.02, lifetime=180) as push:
        push_fault_env.setenv("LIVEKIT_URL", livekit.url)
        push_fault_env.setenv("LIVEKIT_API_TIMEOUT_SECONDS", "1")
        config.get_settings.cache_clear()

        # Given: an expired pod, presence older than the 12 h hard maximum, queued pushes, a storm
        pod = _expired_pod(fault_sql)
        ancient_room = f"net-{uuid.uuid4().hex[:8]}"
        fault_sql.execute("INSERT INTO public.voice_presence (room_name, participant_identity, participant_sid, "
                          "joined_at, last_event_at) VALUES (%s, 'ghost', 'PA_ghost', now() - interval '13 hours', "
                          "now() - interval '13 hours')", (ancient_room,))
        kinds, notifications = _arrange(fault_sql, push)
        sim = Simulation(4242, rooms=5, steps=25)
        rng = random.Random(4243)
        items = [(e["id"], ev.signed(e)) for e in sim.events for _ in range(2 if rng.random() < 0.1 else 1)]
        rng.shuffle(items)
        # LiveKit's retries, scaled; the last attempt waits until PostgreSQL accepts connections again
        sender = RetryingSender(webhook_sender(ev.LambdaContext()), RetryPolicy(scale=0.25, recovered=server.up))

        # ... and LiveKit's RoomService down
        livekit.set_down("503")

        deferred: list[int] = []  # pods each expiry pass could not end

        def maintenance() -> None:
            reconciler.run()
            deferred.append(expiry.run()["podsDeferred"])
            worker.run(f"faults-{uuid.uuid4().hex[:6]}", budget_seconds=5, purge=False)

        crash: dict = {}

        def crash_when_a_third_is_in() -> None:
            while len(sender.deliveries) < len(items) // 3:
                time.sleep(0.01)
            crash.update(crash_and_restart(server, 1.0))

        # When everything runs at once and PostgreSQL crashes a third of the way into the storm
        crasher = threading.Thread(target=crash_when_a_third_is_in, daemon=True)
        with ScheduledLoop(lambda: fanout({"source": "aws.scheduler"}, None)) as pushes, \
                ScheduledLoop(maintenance, every=0.2) as jobs:
            crasher.start()
            sender.run(items)
            crasher.join(300)
            assert crash, "the crash never happened"
            # While LiveKit is down: the pod is deferred, not ended; only the ancient ghost is closed
            assert wait_until(lambda: fault_sql.one(
                "SELECT left_reason FROM public.voice_presence WHERE participant_sid = 'PA_ghost'") is not None, 120)
            assert fault_sql.one("SELECT ended_at FROM public.sim_pods WHERE id = %s", (pod["id"],)) is None
            assert deferred and set(deferred) == {1} and livekit.calls_to("DeleteRoom") == []

            # Then LiveKit comes back knowing who is really there, and the schedules catch up
            truth = sim.truth()
            for sid, (room, identity, left) in truth.items():
                if left is None:
                    livekit.add_participant(room, identity, sid=sid)
            livekit.add_participant(pod["room"], "cadet")
            livekit.set_down(None)
            assert wait_until(lambda: fault_sql.one(
                "SELECT ended_at IS NOT NULL FROM public.sim_pods WHERE id = %s", (pod["id"],)), 120)
            lease = float(os.environ["PUSH_LEASE_SECONDS"])  # rows whose claim the crash ate wait it out
            assert wait_until(lambda: open_deliveries(fault_sql) == 0, 3 * lease + 60)
            passes = jobs.runs  # one more whole maintenance pass (reconciler included) with LiveKit up
            assert wait_until(lambda: jobs.runs >= passes + 2, 120)
        assert pushes.unexpected_failures() == {} and jobs.unexpected_failures() == {}
        assert sender.given_up() == [] and set(sender.status_counts()) <= {200, 503}

        fault_sql.execute("UPDATE nexus_private.livekit_webhook_jobs SET next_run_at = now() WHERE status = 'pending'")
        worker.run("faults-final", budget_seconds=30, purge=False)

        # Row by row. Presence: the truth, session by session, nothing applied twice
        seen = observed(fault_sql, sim.tag)
        for sid, expected in truth.items():
            assert seen.get(sid) == expected, (sid, expected, seen.get(sid))
        assert set(seen) == set(truth)
        # Webhook jobs: each event once, applied
        jobs_by_event = dict(fault_sql.execute(
            "SELECT event_id, status FROM nexus_private.livekit_webhook_jobs WHERE room_name LIKE %s",
            (f"storm-{sim.tag}-%",)))
        assert jobs_by_event == {e["id"]: "done" for e in sim.events}
        # The ghost: closed for age; the pod: room deleted, then ended, its presence closed
        assert fault_sql.one("SELECT left_reason FROM public.voice_presence WHERE participant_sid = 'PA_ghost'") \
            == "max_age_exceeded"
        assert [c.status for c in livekit.calls_to("DeleteRoom")] == [200]
        assert pod["room"] not in livekit.rooms
        assert fault_sql.execute("SELECT end_reason FROM public.sim_pods WHERE id = %s", (pod["id"],)) == [("EXPIRED",)]
        assert fault_sql.one("SELECT status FROM public.instruction_requests WHERE id = %s", (pod["request"],)) \
            == "COMPLETED"
        assert fault_sql.one("SELECT count(*) FROM public.voice_presence WHERE room_name = %s AND left_at IS NULL",
                             (pod["room"],)) == 0
        # Pushes: every device holds each of its notifications exactly once; gone devices nothing new
        from shared.push import topic_for

        received: dict[str, list[str]] = {}
        for r in push.received:
            received.setdefault(r.device_id, []).append(r.headers["topic"])
        out = {"kinds": kinds, "notifications": notifications, "received": received, "topic": topic_for,
               "rejected": list(push.rejected), "endpoints": {d.id: d.endpoint for d in push.devices.values()},
               "rows": _rows(fault_sql, {d.id: d.endpoint for d in push.devices.values()},
                             {n for ns in notifications.values() for n in ns})}
        assert _assert_delivered(out, fault_sql, resent_at_most=0, exact_attempts=False) == 0
