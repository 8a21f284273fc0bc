"""Job-claim throughput with 1, 2, 4 and 8 concurrent workers (FOR UPDATE SKIP LOCKED).

Two queues, each drained by k workers at once, each worker with its own connection:

- webhook retry jobs: the real worker loop (`functions.livekit_webhook.worker.run`):
  claim a batch, run each job (apply the event, mark it done);
- push deliveries: the fan-out's database side: `push_claim_deliveries` leases a
  batch, `push_report_deliveries` records every push as sent (the push service is
  left out: its latency is bench_fanout's subject).

Skipping locked rows is what lets workers share a queue without waiting on each
other or taking a row twice; the throughput ratio to one worker shows whether
they get in each other's way (on 2 cores, beyond 2 workers they can only share
CPU). Every job must end done exactly once.

    .venv/bin/python -m bench.bench_claims
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from typing import Any, Callable

from bench.common import lambda_env, machine, postgres, vapid_keys

WORKERS = (1, 2, 4, 8)
JOBS = int(os.environ.get("NEXUS_BENCH_CLAIM_JOBS", "4000"))
BATCH = 20
DEVICES = 1000


def _drain(workers: int, work: Callable[[str], None]) -> float:
    gate = threading.Barrier(workers + 1)
    errors: list[BaseException] = []

    def one(k: int) -> None:
        try:
            gate.wait()
            work(f"bench-{k}-{uuid.uuid4().hex[:6]}")
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=one, args=(k,)) for k in range(workers)]
    for t in threads:
        t.start()
    gate.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return time.perf_counter() - started


def _queue_webhook_jobs(conn: Any, tag: str) -> None:
    now = int(time.time())
    rows = []
    for i in range(JOBS):
        payload = {"event": "room_started", "id": f"EV_{tag}_{i}", "createdAt": str(now),
                   "room": {"sid": f"RM_{tag}_{i}", "name": f"claims-{tag}-{i}"}}
        rows.append((payload["id"], "room_started", payload["room"]["name"], json.dumps(payload)))
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO nexus_private.livekit_webhook_jobs (event_id, event_type, room_name, payload, "
                        "event_created_at) VALUES (%s, %s, %s, %s::jsonb, now())", rows)


def _until_idle(one_pass: Callable[[], dict[str, Any]]) -> None:
    """Worker passes until one finds nothing to do."""
    while any(one_pass().values()):
        pass


def _queue_deliveries(conn: Any, members: list[str]) -> None:
    per_member = max(1, JOBS // len(members))
    conn.execute("INSERT INTO public.notification_queue (recipient_id, type, title, message) "
                 "SELECT m, 'BENCH', 'Bench', 'claims' FROM unnest(%s::uuid[]) m, generate_series(1, %s)",
                 (members, per_member))


def run() -> dict[str, Any]:
    import psycopg

    from functions.livekit_webhook import worker
    from shared import config, db

    rows: dict[str, dict[int, float]] = {"webhook jobs": {}, "push deliveries": {}}
    with postgres() as url:
        os.environ.update(lambda_env(url, vapid=vapid_keys(), WEBHOOK_WORKER_BATCH=str(BATCH)))
        os.environ.pop("AWS_LAMBDA_FUNCTION_NAME", None)
        config.get_settings.cache_clear()
        db.set_database(None)
        conn = psycopg.connect(url, autocommit=True)
        # A flare's shape: many devices, a few notifications each (reports update each device's row).
        p256dh = vapid_keys()[0]
        members = [r[0] for r in conn.execute(
            "INSERT INTO auth.users (id, email) SELECT gen_random_uuid(), 'claims' || g || '@bench.invalid' "
            "FROM generate_series(1, %s) g RETURNING id::text", (DEVICES,)).fetchall()]
        conn.execute("INSERT INTO public.push_subscriptions (user_id, endpoint, p256dh, auth) "
                     "SELECT m, 'https://push.bench.invalid/' || m, %s, %s FROM unnest(%s::uuid[]) m",
                     (p256dh, "A" * 22, members))

        def push_worker(name: str) -> None:
            while True:
                claim = db.call("push_claim_deliveries", p_limit=BATCH, p_lease_seconds=60, p_max_attempts=8)
                if not claim["deliveries"]:
                    return
                db.call("push_report_deliveries", p_claim_token=claim["claimToken"], p_max_attempts=8,
                        p_results=[{"deliveryId": d["deliveryId"], "outcome": "sent", "status": 201, "error": None}
                                   for d in claim["deliveries"]])

        for k in WORKERS:
            tag = f"w{k}"
            _queue_webhook_jobs(conn, tag)
            # (a pass that ran out of its budget on a slow machine is followed by another, as the schedule would)
            elapsed = _drain(k, lambda name: _until_idle(lambda: worker.run(name, budget_seconds=300, purge=False)))
            done = conn.execute("SELECT count(*), max(attempt) FROM nexus_private.livekit_webhook_jobs "
                                "WHERE event_id LIKE %s AND status = 'done'", (f"EV_{tag}_%",)).fetchone()
            assert done == (JOBS, 1), (k, done)  # each job claimed and run exactly once
            rows["webhook jobs"][k] = JOBS / elapsed

            _queue_deliveries(conn, members)
            elapsed = _drain(k, push_worker)
            sent = conn.execute("SELECT count(*) FILTER (WHERE status = 'sent'), count(*) FILTER (WHERE attempts <> 1), "
                                "count(*) FILTER (WHERE status <> 'sent') FROM nexus_private.push_deliveries "
                                "WHERE status <> 'cancelled'").fetchone()  # (each round starts from an empty queue)
            assert sent[1:] == (0, 0), (k, sent)
            rows["push deliveries"][k] = (max(1, JOBS // len(members)) * len(members)) / elapsed
            conn.execute("DELETE FROM public.notification_queue")  # the next round starts from an empty queue
        conn.close()
        db.set_database(None)
    data = {"rows": {kind: {str(k): v for k, v in by.items()} for kind, by in rows.items()}}
    return {"markdown": report(data), "data": data}


def report(data: dict[str, Any]) -> str:
    lines = [
        "## Job-claim throughput with 1, 2, 4 and 8 workers",
        "",
        f"{JOBS} jobs per queue and round (push: {DEVICES} devices), batches of {BATCH}, `FOR UPDATE SKIP LOCKED`; "
        "each worker a thread with its own connection. Every job ended done exactly once (claimed once, no double claims). Ratio = "
        "throughput against one worker.",
        "",
        "| queue | " + " | ".join(f"{k} worker{'s' if k > 1 else ''}" for k in WORKERS) + " |",
        "|---|" + "---:|" * len(WORKERS),
    ]
    for kind, by in data["rows"].items():
        one = by["1"]
        cells = [f"{by[str(k)]:.0f}/s ({by[str(k)] / one:.2f}x)" for k in WORKERS]
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> str:
    return run()["markdown"]


if __name__ == "__main__":
    print(machine())
    print(main())
