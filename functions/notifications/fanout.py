"""Push fan-out worker: delivers every due notification_queue row to its devices.

Scheduled every minute (template.yaml) as the safety net behind
handle-rescue-request's inline delivery; it also picks up retries whose
backoff ran out, leases left behind by a worker that died, and anything
other producers (the academy) queued with a plain INSERT. Overlapping runs
are safe: see functions/notifications/delivery.py. After each pass it
forgets finished deliveries, and notifications read or finished, older than
PUSH_RETENTION_DAYS.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from functions.notifications.delivery import get_fanout
from shared import db
from shared.config import get_settings

log = logging.getLogger("nexus.push.fanout")

# Leave this much of the Lambda timeout for the last report and the return.
_RESERVE_SECONDS = 5.0


def run(budget_seconds: float = 50.0, *, purge: bool = True) -> dict[str, Any]:
    settings = get_settings().require("database", "vapid")
    summary = get_fanout(settings).drain(deadline=time.monotonic() + budget_seconds).as_dict()
    if purge:
        # Bounded per call (see the SQL function), so it fits the reserve below.
        summary["purged"] = db.call("push_purge_finished", p_older_than_days=settings.PUSH_RETENTION_DAYS)
    return summary


def handler(event: dict, context: Any) -> dict[str, Any]:
    """Lambda entry point for the schedule."""
    emit_metric = None
    if os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):
        from shared.observability import configure_logging, emit_metric

        configure_logging()
    remaining = context.get_remaining_time_in_millis() / 1000 if context is not None else 60.0
    summary = run(budget_seconds=max(1.0, remaining - _RESERVE_SECONDS))
    outcomes = summary["outcomes"]
    log.info("push fan-out pass", extra={"function": "push-fanout", "count": summary["claimed"], "outcome": "ok"})
    if emit_metric is not None:
        for name, key in (("PushSent", "sent"), ("PushRetried", "retry"), ("PushFailed", "failed"), ("PushGone", "gone")):
            if outcomes.get(key):
                emit_metric(name, outcomes[key], function="push-fanout")
        if summary["dead"]:
            emit_metric("PushDead", summary["dead"], function="push-fanout")
    return summary


if __name__ == "__main__":  # python -m functions.notifications.fanout
    print(run())
