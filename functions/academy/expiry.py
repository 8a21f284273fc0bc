"""Academy expiry (scheduled): lapsed requests and sim pods past their time.

Each run, in order:
1. pending requests older than ACADEMY_REQUEST_MAX_AGE_SECONDS become EXPIRED;
2. each live pod past its expiry (oldest first, SIM_POD_EXPIRY_BATCH per run)
   has its LiveKit room deleted through RoomService, which disconnects both
   members, and only then is ended: open presence closed, request COMPLETED;
3. the rooms of ended pods whose delete is due are deleted (SIM_POD_EXPIRY_BATCH
   per run). A pod that ended early (room_finished) gets one at once, and
   every ended pod one more after SIM_POD_ROOM_RECHECK_SECONDS: until then a
   token minted before the end, or one LiveKit refreshed for a member still
   connected, lets LiveKit re-create the room on a join.

LiveKit is the source of truth for who is still talking, so a pod or room
that could not be deleted stays due and the next run retries it; the first
failure stops the run, since LiveKit is then likely down for every room and
each further call would only spend the time budget. Deleting is idempotent
(a room already gone counts as deleted), so overlapping runs are harmless.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from shared import db
from shared.config import get_settings
from shared.livekit_rooms import LiveKitError
from shared.livekit_roomservice import RoomService
from shared.livekit_tokens import SIM_POD_ROOM_RECHECK_SECONDS

log = logging.getLogger("nexus.academy.expiry")


def run(rooms: RoomService | None = None) -> dict[str, Any]:
    settings = get_settings().require("database", "livekit")
    sweep = db.call("academy_expiry_sweep", p_max_age_seconds=settings.ACADEMY_REQUEST_MAX_AGE_SECONDS,
                    p_limit=settings.SIM_POD_EXPIRY_BATCH)
    due, due_rooms = sweep["duePods"], sweep.get("dueRooms") or []
    summary = {"requestsExpired": sweep["requestsExpired"], "podsDue": len(due), "podsEnded": 0, "podsDeferred": 0,
               "roomsDue": len(due_rooms), "roomsDeleted": 0, "roomsDeferred": 0}
    if not due and not due_rooms:
        return summary
    rooms = rooms or RoomService.from_settings()
    for i, pod in enumerate(due):
        if not _delete(rooms, pod):
            summary["podsDeferred"], summary["roomsDeferred"] = len(due) - i, len(due_rooms)
            return summary
        ended = db.call("sim_pod_end", p_sim_pod_id=pod["simPodId"], p_reason="EXPIRED")
        summary["podsEnded"] += int(bool(ended["ended"]))
        _record_deleted(pod)
    for i, pod in enumerate(due_rooms):
        if not _delete(rooms, pod):
            summary["roomsDeferred"] = len(due_rooms) - i
            return summary
        _record_deleted(pod)
        summary["roomsDeleted"] += 1
    return summary


def _delete(rooms: RoomService, pod: dict[str, Any]) -> bool:
    try:
        rooms.delete_room(pod["roomName"])
    except LiveKitError as e:
        log.error("LiveKit did not delete a sim pod room; it stays due for the next run",
                  extra={"function": "sim-pod-expiry", "room": pod["roomName"], "reason": type(e).__name__})
        return False
    return True


def _record_deleted(pod: dict[str, Any]) -> None:
    db.call("sim_pod_room_deleted", p_sim_pod_id=pod["simPodId"], p_recheck_seconds=SIM_POD_ROOM_RECHECK_SECONDS)


def handler(event: dict, context: Any) -> dict[str, Any]:
    """Lambda entry point for the schedule."""
    in_lambda = bool(os.environ.get("AWS_LAMBDA_FUNCTION_NAME"))
    if in_lambda:
        from shared.observability import configure_logging

        configure_logging()
    summary = run()
    deferred = summary["podsDeferred"] + summary["roomsDeferred"]
    log.info("academy expiry ran", extra={"function": "sim-pod-expiry", "count": summary["podsEnded"],
                                          "outcome": "deferred" if deferred else "ok"})
    if in_lambda and deferred:
        from shared.observability import emit_metric

        # An alarm on this catches LiveKit refusing deletes (of live pods' or ended pods' rooms) run after run.
        emit_metric("SimPodsDeferred", deferred, function="sim-pod-expiry")
    return summary


if __name__ == "__main__":  # python -m functions.academy.expiry
    print(run())
