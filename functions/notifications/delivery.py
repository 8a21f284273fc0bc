"""The push fan-out loop: claim a batch, send it concurrently, report each outcome as it comes.

Used by the scheduled fan-out worker and, for its own flare, by
handle-rescue-request. Exactly-once per device is what the database
guarantees between workers: a claim leases deliveries (FOR UPDATE SKIP
LOCKED, so concurrent workers take disjoint rows) and only the lease holder's
report counts. Every send has a hard deadline (shared/push_transport.py)
that ends before the lease does, and a send with too little time left is
not started but handed back (`release`), so a delivery is never in flight in
two workers at once, whatever a push service does. Outcomes are reported as
they arrive, not per batch, so a slow service holds up no one else's. A
worker that dies after claiming loses nothing: its lease expires and the
rows are claimed again. The one unavoidable duplicate, a worker dying after
the push service accepted but before the report, lands on the device under
the same Topic and replaces the first copy.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Callable

from shared import db
from shared.config import ConfigError, Settings
from shared.errors import ApiError
from shared.push import (
    PushMessage,
    PushResult,
    PushSender,
    Subscription,
    VapidHeaderCache,
    build_payload,
    load_vapid_key,
    make_session,
    retry_delay,
    topic_for,
)

log = logging.getLogger("nexus.push")

# Time kept between the last send's timeout and the lease's end, for the
# report round trip and clock differences between us and the database.
LEASE_SAFETY_SECONDS = 5.0
# The shortest time worth starting a send with (or half its full time, if
# that is shorter, as in the flare's inline budget).
MIN_SEND_SECONDS = 1.0
# How long past its deadline a send's thread is still waited for: the
# watchdog ends a send within milliseconds; this covers a busy CPU.
OVERRUN_GRACE_SECONDS = 0.5
# Pause between attempts at a report the database could not take.
REPORT_RETRY_SECONDS = 0.25


def _min_send(send_seconds: float) -> float:
    return min(MIN_SEND_SECONDS, send_seconds / 2)


@dataclass
class Summary:
    claimed: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    stale: int = 0
    dead: int = 0
    batches: int = 0

    def add(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        return {"claimed": self.claimed, "outcomes": dict(self.outcomes), "dead": self.dead, "stale": self.stale,
                "batches": self.batches}


class Fanout:
    """One per container: the sender (pooled session, VAPID cache) and the thread pool."""

    def __init__(self, settings: Settings, sender: PushSender | None = None):
        self.settings = settings
        send_time = settings.PUSH_CONNECT_TIMEOUT_SECONDS + settings.PUSH_READ_TIMEOUT_SECONDS
        if settings.PUSH_LEASE_SECONDS <= send_time + LEASE_SAFETY_SECONDS:
            # Otherwise no send could ever start inside its lease.
            raise ConfigError("Invalid configuration: PUSH_LEASE_SECONDS must exceed the push timeouts plus "
                              f"{LEASE_SAFETY_SECONDS:.0f} s")
        if sender is None:
            assert settings.VAPID_PRIVATE_KEY and settings.VAPID_SUBJECT
            key = load_vapid_key(settings.VAPID_PRIVATE_KEY.get_secret_value(), settings.NEXT_PUBLIC_VAPID_PUBLIC_KEY)
            sender = PushSender(
                VapidHeaderCache(key, settings.VAPID_SUBJECT),
                make_session(settings.PUSH_FANOUT_CONCURRENCY, public_only=not settings.dev_mode),
                connect_timeout=settings.PUSH_CONNECT_TIMEOUT_SECONDS,
                read_timeout=settings.PUSH_READ_TIMEOUT_SECONDS,
            )
        self.sender = sender
        self.pool = ThreadPoolExecutor(max_workers=settings.PUSH_FANOUT_CONCURRENCY, thread_name_prefix="push")

    def close(self) -> None:
        self.pool.shutdown(wait=False)
        self.sender.session.close()

    def drain(self, *, deadline: float, notification_ids: list[str] | None = None,
              timeout: tuple[float, float] | None = None) -> Summary:
        """Claim and send batches until nothing is due or `deadline` (monotonic) nears.

        No send runs past `deadline`, so this returns by then (plus a report round trip).
        """
        summary = Summary()
        min_send = _min_send(sum(timeout or self.sender.timeout))
        while time.monotonic() + min_send < deadline:
            picked = self.run_batch(summary, deadline=deadline, notification_ids=notification_ids, timeout=timeout)
            if picked < self.settings.PUSH_FANOUT_BATCH:
                break
        return summary

    def run_batch(self, summary: Summary, *, deadline: float, notification_ids: list[str] | None = None,
                  timeout: tuple[float, float] | None = None) -> int:
        s = self.settings
        claim = db.call("push_claim_deliveries", p_limit=s.PUSH_FANOUT_BATCH, p_lease_seconds=s.PUSH_LEASE_SECONDS,
                        p_max_attempts=s.PUSH_MAX_ATTEMPTS, p_notification_ids=notification_ids)
        claimed_at = time.monotonic()
        deliveries: list[dict[str, Any]] = claim["deliveries"]
        picked = int(claim.get("picked", len(deliveries)))  # includes rows cancelled or dead instead of sent
        summary.dead += int(claim.get("dead", 0))
        if not deliveries:
            return picked
        summary.batches += 1
        summary.claimed += len(deliveries)
        # No send may still run when the lease ends (another worker could take
        # the row) or after the caller's deadline: each send's own deadline is
        # cut to `stop`, and a send with too little time left is not started.
        stop = min(claimed_at + s.PUSH_LEASE_SECONDS - LEASE_SAFETY_SECONDS, deadline)
        futures = {self.pool.submit(self._send_one, d, stop, timeout): d for d in deliveries}

        # Each outcome is reported as soon as it is known, so one slow push
        # service delays nobody else's report (and cannot hold it past the
        # lease). A report the database could not take is tried again (it is
        # idempotent: rows already reported no longer carry this claim)
        # until the lease, or the caller's time, is about to run out.
        give_up_at = min(claimed_at + s.PUSH_LEASE_SECONDS, deadline + OVERRUN_GRACE_SECONDS)
        waiting = set(futures)
        unreported: list[tuple[dict[str, Any], PushResult | None]] = []
        while waiting or unreported:
            if waiting:
                limit = max(0.0, stop + OVERRUN_GRACE_SECONDS - time.monotonic())
                done, waiting = wait(waiting, timeout=min(limit, REPORT_RETRY_SECONDS) if unreported else limit,
                                     return_when=FIRST_COMPLETED)
                unreported += [(futures[f], self._outcome(f, futures[f])) for f in done]
                if waiting and time.monotonic() >= stop + OVERRUN_GRACE_SECONDS:
                    # Only a send stuck where the watchdog cannot reach (DNS)
                    # gets here; its thread is left behind, its result ignored.
                    unreported += [(futures[f], None if f.cancel() else
                                    PushResult("retry", None, "send overran its deadline")) for f in waiting]
                    waiting = set()
            elif unreported:
                time.sleep(REPORT_RETRY_SECONDS)
            if unreported and self._report(claim["claimToken"], unreported, summary, give_up_at=give_up_at):
                unreported = []
        return picked

    def _outcome(self, future: Future, d: dict[str, Any]) -> PushResult | None:
        try:
            return future.result()
        except Exception:  # a bug in one send must not lose the others' reports
            log.exception("push send crashed", extra={"function": "push-fanout", "job": d["deliveryId"]})
            return PushResult("retry", None, "internal error while sending")

    def _report(self, claim_token: str, rows: list[tuple[dict[str, Any], PushResult | None]], summary: Summary, *,
                give_up_at: float) -> bool:
        """True once recorded; False while the database is unreachable and there is time to try again."""
        try:
            recorded = db.call("push_report_deliveries", p_claim_token=claim_token,
                               p_results=[self._report_row(d, r) for d, r in rows],
                               p_max_attempts=self.settings.PUSH_MAX_ATTEMPTS)
        except ApiError as e:
            if e.code != "UNAVAILABLE" or time.monotonic() + REPORT_RETRY_SECONDS >= give_up_at:
                raise
            log.warning("push report not recorded; trying again", extra={"function": "push-fanout",
                                                                          "count": len(rows)})
            return False
        for _, result in rows:
            summary.add("release" if result is None else result.outcome)
        summary.stale += int(recorded.get("stale", 0))
        summary.dead += int(recorded.get("dead", 0))
        return True

    def _send_one(self, d: dict[str, Any], stop: float, timeout: tuple[float, float] | None) -> PushResult | None:
        send_seconds = sum(timeout or self.sender.timeout)
        now = time.monotonic()
        send_deadline = min(now + send_seconds, stop)
        if send_deadline - now < _min_send(send_seconds):
            return None  # released: due again at once, attempt not counted
        n = d["notification"]
        high = n.get("urgency") == "high"
        message = PushMessage(
            payload=build_payload(n),
            ttl=self.settings.PUSH_HIGH_URGENCY_TTL_SECONDS if high else self.settings.PUSH_TTL_SECONDS,
            urgency=n.get("urgency") or "normal",
            topic=topic_for(n["id"]),
        )
        return self.sender.send(Subscription(d["endpoint"], d["p256dh"], d["auth"]), message, timeout,
                                deadline=send_deadline)

    def _report_row(self, d: dict[str, Any], result: PushResult | None) -> dict[str, Any]:
        if result is None:
            return {"deliveryId": d["deliveryId"], "outcome": "release"}
        row: dict[str, Any] = {"deliveryId": d["deliveryId"], "outcome": result.outcome,
                               "status": result.status, "error": result.error}
        if result.outcome == "retry":
            row["retryInSeconds"] = retry_delay(d["attempts"], result.retry_after, self.settings.PUSH_RETRY_BASE_SECONDS,
                                                self.settings.PUSH_RETRY_MAX_SECONDS, jitter=random.random)
        return row


_fanout: Fanout | None = None
_lock = threading.Lock()


def get_fanout(settings: Settings, factory: Callable[[Settings], Fanout] = Fanout) -> Fanout:
    """The container's fan-out, built on first use and kept warm."""
    global _fanout
    if _fanout is None or _fanout.settings is not settings:
        with _lock:
            if _fanout is None or _fanout.settings is not settings:
                old, _fanout = _fanout, factory(settings)
                if old is not None:
                    old.close()
    return _fanout
