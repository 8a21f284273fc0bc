"""livekit-access-sync (scheduled): LiveKit follows every rank, role and net change.

Each run applies the due access jobs (shared/livekit_access.py): changes made
by plain SQL or `nexus admin`, net threshold changes, and whatever
member-admin or the webhook could not apply inline. A job that meets LiveKit
down goes back to the queue with exponential backoff (5 s doubling, at most
LIVEKIT_ACCESS_RETRY_MAX_SECONDS) and never gives up; the first failure ends
the run, since LiveKit is then likely down for every room. Leases make
overlapping runs safe, and applying a job twice changes nothing.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from shared.config import get_settings
from shared.livekit_access import AccessSync
from shared.livekit_rooms import RoomServiceClient

log = logging.getLogger("nexus.livekit_access.sync")

# Leave this much of the Lambda timeout for the last report and the return.
_RESERVE_SECONDS = 10.0


def run(rooms: RoomServiceClient | None = None, *, budget_seconds: float = 50.0) -> dict[str, Any]:
    settings = get_settings().require("database", "livekit")
    sync = AccessSync(rooms or RoomServiceClient.from_settings(),
                      retry_base_seconds=settings.LIVEKIT_ACCESS_RETRY_BASE_SECONDS,
                      retry_cap_seconds=settings.LIVEKIT_ACCESS_RETRY_MAX_SECONDS)
    return sync.run(deadline=time.monotonic() + budget_seconds, batch=settings.LIVEKIT_ACCESS_SYNC_BATCH).as_dict()


def handler(event: dict, context: Any) -> dict[str, Any]:
    """Lambda entry point for the schedule."""
    in_lambda = bool(os.environ.get("AWS_LAMBDA_FUNCTION_NAME"))
    if in_lambda:
        from shared.observability import configure_logging

        configure_logging()
    remaining = context.get_remaining_time_in_millis() / 1000 if context is not None else 60.0
    summary = run(budget_seconds=max(1.0, remaining - _RESERVE_SECONDS))
    log.info("LiveKit access synced", extra={"function": "livekit-access-sync", "count": summary["done"],
                                            "outcome": "deferred" if summary["failed"] else "ok"})
    if in_lambda and summary["failed"]:
        from shared.observability import emit_metric

        # An alarm on this catches LiveKit refusing changes run after run.
        emit_metric("LiveKitAccessDeferred", summary["failed"], function="livekit-access-sync")
    return summary


if __name__ == "__main__":  # python -m functions.member_admin.sync
    print(run())
