"""Stale-presence reconciler (scheduled): asks LiveKit who is really there.

For each room with open presence older than PRESENCE_RECONCILE_AFTER_SECONDS
(or a room row never finished), least recently asked first, LiveKit's
RoomService says whether the room exists (one ListRooms for the batch) and,
for the rooms it lists, who is in them (ListParticipants):
- sids LiveKit does not list are closed (left_reason absent_in_livekit); an
  empty list closes everyone, but only ListRooms can say a room is gone
  (LiveKit answers ListParticipants for an unknown room with an empty list);
- a room ListRooms does not list is closed entirely and its livekit_rooms row
  finished (room_not_found);
- if LiveKit gives no answer (down, timeout, refused key), nothing is closed
  except sessions older than PRESENCE_MAX_AGE_SECONDS (max_age_exceeded).
Only sessions that joined before LiveKit was asked are judged.

Then the other way round (discovery): every room LiveKit lists (ListRooms,
then ListParticipants per room) is compared with voice_presence. A participant
LiveKit has and we lack (its participant_joined never delivered, or not
applied yet) is given a presence row as if its join had arrived now and judged
like any join (`livekit_presence_adopt`): one who may not be there (brigged,
deleted, demoted, a pod that ended) is removed or corrected in this run, through
the access jobs (shared/livekit_access.py). The schedule runs every 5 minutes
(template.yaml), so that is how long a lost webhook can hide a session.

A run works to a deadline (the Lambda's remaining time less a margin):
whatever LiveKit's latency, rooms not answered by then, or not yet written,
are left as they are, and since their last check does not move they come
first in the next run.
"""

from __future__ import annotations

import logging
import os
import time
from datetime import datetime, timezone
from typing import Any

from shared import db
from shared.config import get_settings
from shared.livekit_rooms import DeadlineReached, LiveKitError, RoomNotFound
from shared.livekit_roomservice import RoomService

log = logging.getLogger("nexus.livekit_webhook.reconciler")

# Of the Lambda's remaining time, this much is kept back for the writes in
# flight, the summary line and the return; the deadline is what is left.
MARGIN_SECONDS = 5.0
# Without a Lambda context (make dev's timers, the CLI): a 60 s function's budget.
DEFAULT_BUDGET_SECONDS = 55.0


def deadline_from(context: Any, margin: float = MARGIN_SECONDS) -> float:
    """time.monotonic() by which a run must be done, from the Lambda context's remaining time."""
    remaining = (context.get_remaining_time_in_millis() / 1000 if context is not None
                 else DEFAULT_BUDGET_SECONDS + margin)
    return time.monotonic() + max(0.0, remaining - margin)


def run(rooms: RoomService | None = None, *, batch: int = 500, deadline: float | None = None,
        discovery: bool = True) -> dict[str, Any]:
    """One pass. `deadline` (time.monotonic()): rooms not judged by then are left for the next run.
    `discovery=False` only closes what LiveKit no longer has."""
    settings = get_settings().require("database", "livekit")
    rooms = rooms or RoomService.from_settings()
    summary = close_stale(rooms, settings, batch=batch, deadline=deadline)
    if discovery:
        summary.update(discover(rooms, settings, deadline=deadline))
    return summary


def discover(rooms: RoomService, settings: Any, *, deadline: float | None = None) -> dict[str, int]:
    """Participants LiveKit has and voice_presence lacks: recorded, then judged (removed or
    corrected at once when they may not be there). LiveKit not answering changes nothing."""
    from shared.livekit_access import AccessSync

    found = {"adopted": 0, "judged": 0}
    end = deadline if deadline is not None else time.monotonic() + DEFAULT_BUDGET_SECONDS
    if time.monotonic() >= end:
        return found
    checked_at = datetime.now(timezone.utc).isoformat()
    listed: list[dict[str, Any]] = []
    try:
        live = rooms.rooms_now(timeout=max(0.05, end - time.monotonic()))
    except LiveKitError as e:
        log.warning("LiveKit did not list its rooms; discovery left for the next run", extra={"reason": str(e)})
        live = []
    silent: LiveKitError | None = None
    unanswered = 0
    for room in live:
        if time.monotonic() >= end:
            break
        try:
            people = rooms.participants(room.name, timeout=max(0.05, end - time.monotonic()))
        except LiveKitError as e:  # that room is left for the next run; the others are still asked
            silent, unanswered = e, unanswered + 1
            continue
        if people:
            listed.append(_storable({"room": room.name, "sid": room.sid,
                                     "participants": [p.as_event_participant() for p in people]}))
    if silent is not None:
        log.warning("LiveKit did not list the participants of some rooms; those are left for the next run",
                    extra={"count": unanswered, "reason": str(silent)})
    if not listed:
        return found
    adopted = db.call("livekit_presence_adopt", p_rooms=listed, p_checked_at=checked_at)
    found["adopted"] = adopted["adopted"]
    jobs = adopted.get("accessJobIds") or []
    if jobs and time.monotonic() < end:
        sync = AccessSync(rooms, retry_base_seconds=settings.LIVEKIT_ACCESS_RETRY_BASE_SECONDS,
                          retry_cap_seconds=settings.LIVEKIT_ACCESS_RETRY_MAX_SECONDS)
        found["judged"] = sync.run(deadline=end, job_ids=jobs).done
    if found["adopted"]:
        log.warning("LiveKit had participants voice_presence lacked (lost webhooks); recorded and judged",
                    extra={"count": found["adopted"]})
    return found


def _storable(value: Any) -> Any:
    """`value` without NUL characters: a JSON string may hold one (another app's participant name or
    metadata), Postgres text and jsonb may not, and one would fail the whole discovery."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {_storable(k): _storable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_storable(v) for v in value]
    return value


def close_stale(rooms: RoomService, settings: Any, *, batch: int = 500,
                deadline: float | None = None) -> dict[str, Any]:
    """Presence LiveKit no longer has: closed (see the module docstring)."""
    stale = db.call("livekit_presence_stale_rooms", p_older_than_seconds=settings.PRESENCE_RECONCILE_AFTER_SECONDS,
                    p_limit=batch)
    summary = {"rooms": len(stale), "closed": 0, "roomsFinished": 0, "unanswered": 0, "deferred": 0}
    if not stale:
        return summary
    names = [r["room"] for r in stale]
    checked_at = datetime.now(timezone.utc).isoformat()
    answers = rooms.presence_by_room(names, deadline=deadline)
    failure: LiveKitError | None = None
    for room in names:
        answer = answers[room]
        if isinstance(answer, DeadlineReached) or (deadline is not None and time.monotonic() >= deadline):
            summary["deferred"] += 1  # not judged: its check time stays, so it leads the next run
            continue
        if isinstance(answer, RoomNotFound):
            result = db.call("livekit_presence_reconcile", p_room=room, p_checked_at=checked_at, p_room_gone=True)
        elif isinstance(answer, LiveKitError):
            summary["unanswered"] += 1
            failure = answer
            result = db.call("livekit_presence_reconcile", p_room=room, p_checked_at=checked_at,
                             p_max_age_seconds=settings.PRESENCE_MAX_AGE_SECONDS)
        else:
            result = db.call("livekit_presence_reconcile", p_room=room, p_checked_at=checked_at,
                             p_present_sids=[p.sid for p in answer])
        summary["closed"] += result["closed"]
        summary["roomsFinished"] += int(bool(result["roomFinished"]))
    if failure is not None:
        log.error("LiveKit gave no answer for some rooms; only over-age presence was closed",
                  extra={"count": summary["unanswered"], "reason": str(failure)})
    if summary["deferred"]:
        log.warning("deadline reached; rooms left for the next run", extra={"count": summary["deferred"]})
    return summary


def handler(event: dict, context: Any) -> dict[str, Any]:
    """Lambda entry point for the schedule."""
    if os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):
        from shared.observability import configure_logging

        configure_logging()
    summary = run(deadline=deadline_from(context))
    log.info("presence reconciled", extra={"function": "livekit-presence-reconciler", "count": summary["closed"],
                                           "outcome": "ok"})
    return summary


if __name__ == "__main__":  # python -m functions.livekit_webhook.reconciler
    print(run())
