"""LiveKit follows the database: connected members get their current rights.

A change to a member's rank or roles, or to a net's thresholds, queues a job
in the same transaction (triggers in 20251218000100_member_admin_functions.sql);
so does a `participant_joined` whose permission differs from current rights
(more: a token minted before a brig or demotion; less: strict mode's tokens,
LIVEKIT_PUBLISH_AFTER_JOIN_CHECK, which carry no publish right). A job
never replays a change: applying it reads the member's rights *now* and makes
LiveKit match, so jobs applied late, twice or out of order end in the same place.

Per job, for each room (the job's room; for a member's job every room
voice_presence has them open in *and* every room LiveKit lists, since a join
whose webhook was lost or is not committed yet has no presence row), LiveKit's
own participant list is the truth:
- a participant who may no longer join is removed (RemoveParticipant); a
  member identity without a profile may not join;
- one whose permission or metadata differs from current rights is updated in
  place (UpdateParticipant: subscribe, publish microphone only, data, and
  metadata `{userId, rank}`), without reconnecting;
- anyone else is left alone.

Rights come with a version (20251222000100_livekit_convergence_functions.sql).
The report hands back the version of every participant the job changed; one
that moved since it was read (a demotion committed while a room job was
writing the rights it read before) gets a `recheck` job, applied in the same
run, so LiveKit ends at the rights the database holds after the last change
whatever jobs ran at once. The claim never hands out a member (or a room) whose
job is processing.

Used inline by member-admin (its own change, within a time budget) and by the
webhook (a join to correct), and by the `livekit-access-sync` schedule for
everything else, with backoff while LiveKit is down. Only the standard library
talks to LiveKit here (shared/livekit_rooms.py's Twirp JSON calls, standard library only).
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from shared import db
from shared.livekit_rooms import LiveKitError, ParticipantState, RoomServiceClient

log = logging.getLogger("nexus.livekit_access")

VOICE_SOURCES = ["MICROPHONE"]


def desired_permission(rights: dict[str, Any]) -> dict[str, Any]:
    """The ParticipantPermission a member should hold now (as livekit-token would mint it)."""
    publish = bool(rights.get("canPublish"))
    return {
        "canSubscribe": bool(rights.get("canSubscribe")),
        "canPublish": publish,
        "canPublishData": bool(rights.get("canPublishData")),
        "canPublishSources": list(VOICE_SOURCES) if publish else [],
    }


def desired_metadata(rights: dict[str, Any]) -> str:
    return json.dumps({"userId": str(rights["userId"]), "rank": rights["rank"]}, separators=(",", ":"))


def _metadata_matches(current: str, rights: dict[str, Any]) -> bool:
    try:
        parsed = json.loads(current) if current else {}
    except ValueError:
        return False
    return isinstance(parsed, dict) and parsed.get("rank") == rights["rank"] \
        and str(parsed.get("userId")) == str(rights["userId"])


def _permission_matches(current: dict[str, Any], wanted: dict[str, Any]) -> bool:
    if not wanted["canPublish"]:
        current = {**current, "canPublishSources": []}  # sources mean nothing without publish
    return all(current.get(k) == v for k, v in wanted.items())


# What nexus_private.lk_uuid (the webhook's join check) takes for a member id: the hyphenated form
# tokens are minted with. uuid.UUID alone also reads "urn:uuid:...", "{...}" and bare hex, which
# another app sharing the LiveKit project may use: those sessions are not our members'.
_MEMBER_IDENTITY = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)


def _member_id(identity: str) -> str | None:
    if not isinstance(identity, str) or not _MEMBER_IDENTITY.fullmatch(identity):
        return None  # bots, egress, anything that is not one of our members
    return str(uuid.UUID(identity))


@dataclass
class SyncSummary:
    claimed: int = 0
    done: int = 0
    failed: int = 0
    outcomes: Counter = field(default_factory=Counter)  # removed, updated, unchanged
    done_ids: set = field(default_factory=set)
    rechecks: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"claimed": self.claimed, "done": self.done, "failed": self.failed,
                "removed": self.outcomes["removed"], "updated": self.outcomes["updated"],
                "unchanged": self.outcomes["unchanged"], "rechecks": self.rechecks}


class AccessSync:
    """Claims access jobs, brings LiveKit in line for each, reports what happened."""

    def __init__(self, rooms: RoomServiceClient, worker: str | None = None, *,
                 lease_seconds: int = 60, retry_base_seconds: int = 5, retry_cap_seconds: int = 60,
                 revoke_before_remove: bool | None = None):
        self.rooms = rooms
        if revoke_before_remove is None:
            from shared.config import get_settings

            revoke_before_remove = get_settings().LIVEKIT_PUBLISH_AFTER_JOIN_CHECK
        # Strict mode: LiveKit hands the client a refreshed token with its grants at every change,
        # so taking every right away first leaves the client holding a token without publish.
        self.revoke_before_remove = revoke_before_remove
        self.worker = worker or f"access-{uuid.uuid4().hex[:12]}"
        self.lease_seconds = lease_seconds
        self.retry_base_seconds = retry_base_seconds
        self.retry_cap_seconds = retry_cap_seconds

    def run(self, *, deadline: float, job_ids: list[int] | None = None, batch: int = 50) -> SyncSummary:
        """Apply due jobs (or exactly `job_ids`, then the rechecks they leave) until none are left
        or `deadline` (monotonic) passes. The first LiveKit failure ends the run: the rest are
        handed back for a later retry."""
        summary = SyncSummary()
        while time.monotonic() < deadline:
            claimed = db.call("livekit_access_jobs_claim", p_worker=self.worker, p_limit=batch,
                              p_lease_seconds=self.lease_seconds, p_job_ids=job_ids)["jobs"]
            summary.claimed += len(claimed)
            if not claimed:
                break
            done: list[Any] = []
            failed: list[int] = []
            error: str | None = None
            live_rooms: list[str] | None = None
            for job in claimed:
                if error is not None or time.monotonic() >= deadline:
                    failed.append(job["id"])
                    continue
                try:
                    if job.get("room") is None and live_rooms is None:
                        # read after the claim, so after every change the batch's jobs stand for
                        live_rooms = [r.name for r in self.rooms.rooms_now(timeout=self._left(deadline))]
                    written = self._apply(job, deadline, summary.outcomes, live_rooms)
                    done.append({"id": job["id"], "written": written} if written else job["id"])
                except LiveKitError as e:
                    error = f"{type(e).__name__}: {e}"
                    failed.append(job["id"])
            report = db.call("livekit_access_jobs_report", p_worker=self.worker, p_done=done, p_failed=failed,
                             p_error=error or "deadline reached before the job ran",
                             p_retry_base_seconds=self.retry_base_seconds,
                             p_retry_cap_seconds=self.retry_cap_seconds)
            summary.done += report["done"]
            summary.done_ids.update(report.get("doneIds") or ())
            summary.failed += len(failed)
            rechecks = report.get("recheck") or []
            summary.rechecks += len(rechecks)
            if error is not None:
                log.warning("LiveKit did not answer; access jobs stay queued with backoff",
                            extra={"function": "livekit-access-sync", "reason": error[:200]})
                break
            if failed:
                break
            if job_ids is not None:
                if not rechecks:
                    break
                job_ids = rechecks  # rights moved while we wrote: apply the database's now
        return summary

    def _apply(self, job: dict[str, Any], deadline: float, outcomes: Counter,
               live_rooms: list[str] | None = None) -> list[dict[str, Any]]:
        """Bring LiveKit to current rights for one job; returns what it changed, with the rights
        version each change was made from. `live_rooms`: the rooms LiveKit lists (asked here if None)."""
        only = str(job["userId"]) if job.get("userId") else None
        rooms = list(job["rooms"])
        if job.get("room") is None:
            if live_rooms is None:
                live_rooms = [r.name for r in self.rooms.rooms_now(timeout=self._left(deadline))]
            rooms = list(dict.fromkeys([*rooms, *live_rooms]))
        found: list[tuple[str, ParticipantState]] = []
        for room in rooms:
            for p in self.rooms.participants(room, timeout=self._left(deadline)):
                member = _member_id(p.identity)
                if member is not None and (only is None or member == only):
                    found.append((room, p))
        if not found:
            return []
        rights = db.call("livekit_access_rights",
                         p_pairs=[{"userId": _member_id(p.identity), "room": room} for room, p in found])
        written: list[dict[str, Any]] = []
        for (room, p), r in zip(found, rights):
            if not r["canJoin"]:
                if self.revoke_before_remove:
                    self.rooms.update_participant(room, p.identity, permission=desired_permission({}),
                                                  metadata=p.metadata, timeout=self._left(deadline))
                self.rooms.remove_participant(room, p.identity, timeout=self._left(deadline))
                outcomes["removed"] += 1
            else:
                wanted = desired_permission(r)
                if _permission_matches(p.permission, wanted) and _metadata_matches(p.metadata, r):
                    outcomes["unchanged"] += 1
                    continue
                self.rooms.update_participant(room, p.identity, permission=wanted, metadata=desired_metadata(r),
                                              timeout=self._left(deadline))
                outcomes["updated"] += 1
            written.append({"userId": str(r["userId"]), "room": room, "version": r.get("version", 0)})
        return written

    @staticmethod
    def _left(deadline: float) -> float:
        return max(0.05, deadline - time.monotonic())


def apply_now(job_ids: list[int], budget_seconds: float, settings: Any) -> SyncSummary | None:
    """The inline pass (member-admin, the webhook's join check): these jobs, within the budget.
    Never raises: whatever is not applied stays queued for the schedule."""
    if budget_seconds <= 0 or not job_ids:
        return None
    try:
        sync = AccessSync(RoomServiceClient.from_settings(),
                          retry_base_seconds=settings.LIVEKIT_ACCESS_RETRY_BASE_SECONDS,
                          retry_cap_seconds=settings.LIVEKIT_ACCESS_RETRY_MAX_SECONDS)
        return sync.run(deadline=time.monotonic() + budget_seconds, job_ids=job_ids)
    except Exception:
        log.exception("inline LiveKit access pass failed; the schedule will apply it")
        return None
