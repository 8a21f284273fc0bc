"""The webhook retry worker on its own database: claims, backoff, dead jobs, stale locks, purge."""

from __future__ import annotations

import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from tests.integration.livekit_webhook import events as ev

NOW = time.time()


@pytest.fixture
def worker(private_env):
    from functions.livekit_webhook import worker as module

    return module


@pytest.fixture(autouse=True)
def empty_queue(private_sql):
    private_sql.execute("DELETE FROM nexus_private.livekit_webhook_jobs")
    yield


def add_job(sql, event: dict, *, status: str = "pending", max_attempts: int = 8) -> int:
    """A stored delivery waiting for the worker, as the webhook leaves one when applying fails."""
    return sql.one(
        "INSERT INTO nexus_private.livekit_webhook_jobs (event_id, event_type, room_name, payload, "
        "event_created_at, status, max_attempts) VALUES (%s, %s, %s, %s::jsonb, to_timestamp(%s), %s, %s) "
        "RETURNING id",
        (event.get("id") or ev.new_id(), event["event"], (event.get("room") or {}).get("name"), json.dumps(event),
         int(event.get("createdAt", NOW)), status, max_attempts))


def job(sql, job_id: int) -> dict:
    row = sql.execute("SELECT status, attempt, next_run_at, locked_by, last_error, error_history, "
                      "extract(epoch FROM next_run_at - now()) FROM nexus_private.livekit_webhook_jobs "
                      "WHERE id = %s", (job_id,))[0]
    return dict(zip(("status", "attempt", "next_run_at", "locked_by", "last_error", "history", "due_in"), row))


def make_due(sql) -> None:
    sql.execute("UPDATE nexus_private.livekit_webhook_jobs SET next_run_at = now() WHERE status = 'pending'")


def test_a_delivery_deferred_by_a_lock_is_applied_by_the_worker(private_env, private_sql, worker):
    # Given the presence table is locked by someone else for longer than the webhook waits
    from functions.livekit_webhook.app import app
    from tests.support import Client

    room = f"net-{uuid.uuid4().hex[:8]}"
    event = ev.participant_event("participant_joined", room, "RM_w1", "u1", "PA_w1", NOW, NOW)
    body, headers = ev.signed(event)
    blocker = psycopg.connect(private_sql.url)
    try:
        blocker.execute("LOCK TABLE public.voice_presence IN EXCLUSIVE MODE")
        # When LiveKit delivers, the event is still acknowledged: it is stored, applying is deferred
        reply = Client(app).post(raw=body, headers=headers)
        assert reply.status == 200 and reply.json["status"] == "queued"
    finally:
        blocker.rollback()
        blocker.close()
    job_id = private_sql.one("SELECT id FROM nexus_private.livekit_webhook_jobs WHERE event_id = %s", (event["id"],))
    deferred = job(private_sql, job_id)
    assert deferred["status"] == "pending" and deferred["history"][0]["sqlstate"] == "55P03"
    assert private_sql.one("SELECT count(*) FROM public.voice_presence WHERE room_name = %s", (room,)) == 0
    # Then once due, the worker applies it exactly once
    make_due(private_sql)
    assert worker.run("w-1", purge=False)["done"] == 1
    assert job(private_sql, job_id)["status"] == "done"
    assert private_sql.one("SELECT count(*) FROM public.voice_presence WHERE room_name = %s AND left_at IS NULL",
                           (room,)) == 1


def test_failing_job_backs_off_with_jitter_then_goes_dead_keeping_its_errors(private_sql, worker):
    # Given a stored event the current code cannot apply (no participant), allowed 3 attempts
    broken = {"event": "participant_joined", "id": ev.new_id(), "createdAt": str(int(NOW)),
              "room": {"name": "net-broken", "sid": "RM_b"}}
    job_id = add_job(private_sql, broken, max_attempts=3)
    delays = []
    for attempt in (1, 2):
        summary = worker.run(f"w-{attempt}", purge=False)
        assert summary["pending"] == 1
        state = job(private_sql, job_id)
        assert state["status"] == "pending" and state["attempt"] == attempt and state["locked_by"] is None
        delays.append(state["due_in"])
        # exponential with jitter: base 5 s * 2^(attempt-1), between half and all of it
        assert 5 * 2 ** (attempt - 1) * 0.5 - 1 <= state["due_in"] <= 5 * 2 ** (attempt - 1) + 1
        # not due yet: another run leaves it alone
        assert worker.run("w-early", purge=False)["pending"] == 0
        make_due(private_sql)
    summary = worker.run("w-3", purge=False)
    assert summary["dead"] == 1
    state = job(private_sql, job_id)
    assert state["status"] == "dead" and state["attempt"] == 3
    assert [h["attempt"] for h in state["history"]] == [1, 2, 3]
    assert all("needs room.name, participant.sid" in h["error"] for h in state["history"])
    assert [h["worker"] for h in state["history"]] == ["w-1", "w-2", "w-3"]
    # Dead jobs are never claimed again
    make_due(private_sql)
    assert worker.run("w-4", purge=False) == {"done": 0, "pending": 0, "dead": 0, "lost": 0, "recovered": 0}


def test_concurrent_workers_never_apply_a_job_twice(private_env, private_sql, worker):
    # Given 400 stored events waiting for the worker
    room = f"net-{uuid.uuid4().hex[:8]}"
    ids = [add_job(private_sql, ev.participant_event("participant_joined", room, "RM_c", f"u{i}", f"PA_c{i}",
                                                      NOW - i, NOW - i)) for i in range(400)]
    # When six workers run at once, in small batches so they really interleave
    from shared import config

    start = threading.Barrier(6)

    def run(n):
        start.wait()
        return worker.run(f"w-{n}", purge=False)

    private_env.setenv("WEBHOOK_WORKER_BATCH", "7")
    config.get_settings.cache_clear()
    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(run, range(6)))
    # Then every job ran exactly once, by one worker, in one attempt
    assert sum(r["done"] for r in results) == 400
    assert sum(r["lost"] for r in results) == 0
    assert sum(1 for r in results if r["done"]) >= 2, "the work was shared"
    rows = private_sql.execute("SELECT status, attempt FROM nexus_private.livekit_webhook_jobs WHERE id = ANY(%s)",
                               (ids,))
    assert set(rows) == {("done", 1)}
    assert private_sql.one("SELECT count(*) FROM public.voice_presence WHERE room_name = %s AND left_at IS NULL",
                           (room,)) == 400


def test_stale_lock_is_recovered_and_the_crashed_worker_cannot_apply_it_later(private_sql, worker):
    from shared import db

    room = f"net-{uuid.uuid4().hex[:8]}"
    job_id = add_job(private_sql, ev.participant_event("participant_joined", room, "RM_s", "u1", "PA_s1", NOW, NOW))
    # Given worker A claimed the job and then died (its Lambda timed out)
    claimed = db.call("livekit_webhook_jobs_claim", p_worker="A", p_limit=10, p_visibility_seconds=120)
    assert claimed["jobs"] == [job_id]
    assert job(private_sql, job_id)["status"] == "processing"
    # While its lock is fresh, nobody else takes it
    assert worker.run("B", purge=False)["recovered"] == 0
    # When the lock outlives the visibility timeout
    private_sql.execute("UPDATE nexus_private.livekit_webhook_jobs SET locked_at = now() - interval '10 minutes' "
                        "WHERE id = %s", (job_id,))
    summary = worker.run("B", purge=False)
    # Then it goes back to pending and is run by B, with the lost attempt on record
    assert summary["recovered"] == 1 and summary["done"] == 1
    state = job(private_sql, job_id)
    assert state["status"] == "done" and state["attempt"] == 2
    assert state["history"][0]["worker"] == "A" and "lock expired" in state["history"][0]["error"]
    # And if A wakes up and tries to finish, nothing happens
    assert db.call("livekit_webhook_job_run", p_job_id=job_id, p_worker="A") == {"status": "lost"}
    assert private_sql.one("SELECT count(*) FROM public.voice_presence WHERE room_name = %s", (room,)) == 1


def test_stale_lock_on_the_last_attempt_goes_dead(private_sql, worker):
    from shared import db

    job_id = add_job(private_sql, {"event": "track_published", "id": ev.new_id(), "createdAt": str(int(NOW))},
                     max_attempts=1)
    db.call("livekit_webhook_jobs_claim", p_worker="A", p_limit=10, p_visibility_seconds=120)
    private_sql.execute("UPDATE nexus_private.livekit_webhook_jobs SET locked_at = now() - interval '1 hour' "
                        "WHERE id = %s", (job_id,))
    assert worker.run("B", purge=False)["recovered"] == 1
    assert job(private_sql, job_id)["status"] == "dead"


def test_purge_removes_old_done_jobs_only(private_sql, worker):
    old, recent, dead = (add_job(private_sql, {"event": "track_published", "id": ev.new_id()}) for _ in range(3))
    private_sql.execute("UPDATE nexus_private.livekit_webhook_jobs SET status = 'done', done_at = now() - "
                        "interval '4 days' WHERE id = %s", (old,))
    private_sql.execute("UPDATE nexus_private.livekit_webhook_jobs SET status = 'done', done_at = now() WHERE id = %s",
                        (recent,))
    private_sql.execute("UPDATE nexus_private.livekit_webhook_jobs SET status = 'dead', updated_at = now() - "
                        "interval '4 days' WHERE id = %s", (dead,))
    summary = worker.run("w-purge")
    assert summary["purged"]["done"] == 1
    left = {r[0] for r in private_sql.execute("SELECT id FROM nexus_private.livekit_webhook_jobs")}
    assert left == {recent, dead}


def test_scheduled_handler_runs_within_its_time_budget(private_sql, worker):
    add_job(private_sql, {"event": "track_published", "id": ev.new_id(), "createdAt": str(int(NOW))})
    summary = worker.handler({"source": "aws.scheduler"}, ev.LambdaContext(remaining_ms=30_000))
    assert summary["done"] == 1 and "purged" in summary


def test_a_job_that_dies_in_stale_lock_recovery_counts_in_webhook_jobs_dead(private_env, private_sql, worker, capsys):
    from shared import db, observability

    job_id = add_job(private_sql, {"event": "track_published", "id": ev.new_id(), "createdAt": str(int(NOW))},
                     max_attempts=1)
    # Given worker A claimed the job's last attempt and died (its Lambda timed out)
    db.call("livekit_webhook_jobs_claim", p_worker="A", p_limit=10, p_visibility_seconds=120)
    private_sql.execute("UPDATE nexus_private.livekit_webhook_jobs SET locked_at = now() - interval '1 hour' "
                        "WHERE id = %s", (job_id,))
    # When the next scheduled pass runs in Lambda
    private_env.setenv("AWS_LAMBDA_FUNCTION_NAME", "nomadnexus-test-livekit-webhook-worker")
    observability.reset_for_tests()
    capsys.readouterr()
    try:
        summary = worker.handler({"source": "aws.scheduler"}, ev.LambdaContext(remaining_ms=30_000))
    finally:
        observability.reset_for_tests()
    # Then the job is dead, and the metric the alarm watches counts it
    assert job(private_sql, job_id)["status"] == "dead"
    assert summary["dead"] == 1
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert sum(r.get("WebhookJobsDead", 0) for r in records) == 1


def test_jobs_record_when_they_were_last_attempted(private_env, private_sql, worker):
    from shared import db

    def last_attempt(job_id):
        return private_sql.one("SELECT last_attempt_at FROM nexus_private.livekit_webhook_jobs WHERE id = %s",
                               (job_id,))

    job_id = add_job(private_sql, {"event": "track_published", "id": ev.new_id(), "createdAt": str(int(NOW))})
    private_sql.execute("UPDATE nexus_private.livekit_webhook_jobs SET last_attempt_at = NULL WHERE id = %s",
                        (job_id,))
    # When the worker claims the job, the attempt's time is recorded
    before = private_sql.one("SELECT now()")
    db.call("livekit_webhook_jobs_claim", p_worker="A", p_limit=10, p_visibility_seconds=120)
    claimed_at = last_attempt(job_id)
    assert claimed_at is not None and claimed_at >= before
    # And a delivery stored by the webhook (its first attempt) has it from the start
    room = f"net-{uuid.uuid4().hex[:8]}"
    stored = db.call("livekit_webhook_ingest", p_event_id=ev.new_id(),
                     p_payload=json.dumps(ev.participant_event("participant_joined", room, "RM_t", "u1", "PA_t1",
                                                               NOW, NOW)))
    assert last_attempt(stored["jobId"]) is not None
