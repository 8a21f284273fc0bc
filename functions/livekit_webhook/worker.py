"""Webhook retry worker (scheduled): applies stored events that failed on arrival.

Each run: claim a batch of due jobs (stale locks are returned to pending
first), run each (apply + mark done in one transaction; failures back off
exponentially with jitter and go dead after max attempts; a job whose
worker died on its last attempt goes dead when its lock is recovered, and
counts as dead too), repeat until
nothing is due or the time budget is spent, then purge old jobs. Any number
of runs may overlap: claims use FOR UPDATE SKIP LOCKED and a job runs only
under the lock of the worker that claimed it. All of it is SQL in
20251211000100_livekit_webhook_functions.sql.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections import Counter
from typing import Any

from shared import db
from shared.config import get_settings

log = logging.getLogger("nexus.livekit_webhook.worker")

# Leave this much of the Lambda timeout for the purge and the return.
_RESERVE_SECONDS = 10.0


def run(worker_id: str, *, budget_seconds: float = 50.0, purge: bool = True) -> dict[str, Any]:
    """One worker pass; returns counts by outcome (done, pending, dead, lost, recovered)."""
    settings = get_settings().require("database")
    deadline = time.monotonic() + budget_seconds
    totals: Counter[str] = Counter()
    while time.monotonic() < deadline:
        claimed = db.call("livekit_webhook_jobs_claim", p_worker=worker_id, p_limit=settings.WEBHOOK_WORKER_BATCH,
                          p_visibility_seconds=settings.WEBHOOK_JOB_VISIBILITY_SECONDS)
        totals["recovered"] += claimed["recovered"]
        # A job whose worker died on its last attempt goes dead in the claim's
        # stale-lock recovery, never reaching job_run: it is dead all the same.
        totals["dead"] += claimed.get("recoveredDead", 0)
        if not claimed["jobs"]:
            break
        # The whole batch is run even past the deadline: a claimed job left
        # unrun would wait out the visibility timeout and lose an attempt.
        for job_id in claimed["jobs"]:
            result = db.call("livekit_webhook_job_run", p_job_id=job_id, p_worker=worker_id)
            totals[result["status"]] += 1
            if result["status"] in ("pending", "dead"):
                log.warning("webhook job failed", extra={"job": job_id, "outcome": result["status"],
                                                         "reason": str(result.get("error", ""))[:200]})
    summary: dict[str, Any] = {k: totals.get(k, 0) for k in ("done", "pending", "dead", "lost", "recovered")}
    if purge:
        summary["purged"] = db.call("livekit_webhook_jobs_purge",
                                    p_done_older_than_hours=settings.WEBHOOK_DONE_RETENTION_HOURS)
    return summary


def handler(event: dict, context: Any) -> dict[str, Any]:
    """Lambda entry point for the schedule."""
    in_lambda = bool(os.environ.get("AWS_LAMBDA_FUNCTION_NAME"))
    if in_lambda:
        from shared.observability import configure_logging

        configure_logging()
    worker_id = getattr(context, "aws_request_id", None) or f"local-{uuid.uuid4().hex[:12]}"
    remaining = context.get_remaining_time_in_millis() / 1000 if context is not None else 60.0
    summary = run(worker_id, budget_seconds=max(1.0, remaining - _RESERVE_SECONDS))
    log.info("webhook worker pass", extra={"function": "livekit-webhook-worker", "count": summary["done"],
                                           "outcome": "ok"})
    if in_lambda:
        from shared.observability import count

        count("WebhookEventsApplied", summary["done"], function="livekit-webhook-worker")
        # a CloudWatch alarm on this metric is how an operator hears of dead events
        count("WebhookJobsDead", summary["dead"], function="livekit-webhook-worker")
    return summary


if __name__ == "__main__":  # python -m functions.livekit_webhook.worker
    print(run(f"cli-{uuid.uuid4().hex[:12]}"))
