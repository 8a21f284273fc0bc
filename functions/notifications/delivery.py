"""The push fan-out loop: claim a batch, send it concurrently, report it.

Used by the scheduled fan-out worker and, for its own flare, by
handle-rescue-request. Exactly-once per device is what the database
guarantees between workers: a claim leases deliveries (FOR UPDATE SKIP
LOCKED, so concurrent workers take disjoint rows) and only the lease holder's
report counts. A worker stops *starting* sends once its lease is too close
to running out for a send to finish inside it, and hands those back
(`release`), so a delivery is never in flight in two workers at once. A
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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

from shared import db
from shared.config import ConfigError, Settings
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
        """Claim and send batches until nothing is due or `deadline` (monotonic) nears."""
        summary = Summary()
        send_time = sum(timeout or self.sender.timeout)
        while time.monotonic() + send_time < deadline:
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
        send_time = sum(timeout or self.sender.timeout)
        # Start no send that could still be running when the lease ends (or
        # after the caller's own deadline).
        start_by = min(claimed_at + s.PUSH_LEASE_SECONDS - send_time - LEASE_SAFETY_SECONDS, deadline - send_time)

        futures = [self.pool.submit(self._send_one, d, start_by, timeout) for d in deliveries]
        report = []
        for d, future in zip(deliveries, futures):
            try:
                result: PushResult | None = future.result()
            except Exception:  # a bug in one send must not lose the batch's report
                log.exception("push send crashed", extra={"function": "push-fanout", "job": d["deliveryId"]})
                result = PushResult("retry", None, "internal error while sending")
            report.append(self._report_row(d, result))
            summary.add("release" if result is None else result.outcome)
        recorded = db.call("push_report_deliveries", p_claim_token=claim["claimToken"], p_results=report,
                           p_max_attempts=s.PUSH_MAX_ATTEMPTS)
        summary.stale += int(recorded.get("stale", 0))
        summary.dead += int(recorded.get("dead", 0))
        return picked

    def _send_one(self, d: dict[str, Any], start_by: float, timeout: tuple[float, float] | None) -> PushResult | None:
        if time.monotonic() > start_by:
            return None
        n = d["notification"]
        high = n.get("urgency") == "high"
        message = PushMessage(
            payload=build_payload(n),
            ttl=self.settings.PUSH_HIGH_URGENCY_TTL_SECONDS if high else self.settings.PUSH_TTL_SECONDS,
            urgency=n.get("urgency") or "normal",
            topic=topic_for(n["id"]),
        )
        return self.sender.send(Subscription(d["endpoint"], d["p256dh"], d["auth"]), message, timeout)

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
