"""Academy expiry (scheduled): lapsed requests and sim pods past their time.

Each run, in order:
1. pending requests older than ACADEMY_REQUEST_MAX_AGE_SECONDS become EXPIRED;
2. each live pod past its expiry (oldest first, SIM_POD_EXPIRY_BATCH per run)
   has its LiveKit room deleted through RoomService, which disconnects both
   members, and only then is ended: open presence closed, request COMPLETED.

LiveKit is the source of truth for who is still talking, so a pod whose room
could not be deleted stays due and the next run retries it; the first
failure stops the run, since LiveKit is then likely down for every room and
each further call would only spend the time budget. Deleting is idempotent
(a room already gone counts as deleted), so overlapping runs are harmless.
A pod whose room LiveKit closed earlier was already ended by the
livekit_rooms trigger (room_finished) and is never due here.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from shared import db
from shared.config import get_settings
from shared.livekit_rooms import LiveKitError, RoomServiceClient

log = logging.getLogger("nexus.academy.expiry")


def run(rooms: RoomServiceClient | None = None) -> dict[str, Any]:
    settings = get_settings().require("database", "livekit")
    sweep = db.call("academy_expiry_sweep", p_max_age_seconds=settings.ACADEMY_REQUEST_MAX_AGE_SECONDS,
                    p_limit=settings.SIM_POD_EXPIRY_BATCH)
    due = sweep["duePods"]
    summary = {"requestsExpired": sweep["requestsExpired"], "podsDue": len(due), "podsEnded": 0, "podsDeferred": 0}
    if not due:
        return summary
    rooms = rooms or RoomServiceClient.from_settings()
    for i, pod in enumerate(due):
        try:
            rooms.delete_room(pod["roomName"])
        except LiveKitError as e:
            summary["podsDeferred"] = len(due) - i
            log.error("LiveKit did not delete a sim pod room; pods stay due for the next run",
                      extra={"function": "sim-pod-expiry", "room": pod["roomName"],
                             "count": summary["podsDeferred"], "reason": type(e).__name__})
            break
        ended = db.call("sim_pod_end", p_sim_pod_id=pod["simPodId"], p_reason="EXPIRED")
        summary["podsEnded"] += int(bool(ended["ended"]))
    return summary


def handler(event: dict, context: Any) -> dict[str, Any]:
    """Lambda entry point for the schedule."""
    in_lambda = bool(os.environ.get("AWS_LAMBDA_FUNCTION_NAME"))
    if in_lambda:
        from shared.observability import configure_logging

        configure_logging()
    summary = run()
    log.info("academy expiry ran", extra={"function": "sim-pod-expiry", "count": summary["podsEnded"],
                                          "outcome": "deferred" if summary["podsDeferred"] else "ok"})
    if in_lambda and summary["podsDeferred"]:
        from shared.observability import emit_metric

        # An alarm on this catches LiveKit refusing deletes run after run.
        emit_metric("SimPodsDeferred", summary["podsDeferred"], function="sim-pod-expiry")
    return summary


if __name__ == "__main__":  # python -m functions.academy.expiry
    print(run())
