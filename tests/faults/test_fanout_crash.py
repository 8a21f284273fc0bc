"""PostgreSQL crashes in the middle of a push fan-out, while the push service answers 201/410/429/500.

Sixty devices on the loopback push service (which verifies VAPID and decrypts
every push) get three notifications each; a tenth of the devices are gone
(410), some throttle once (429 + Retry-After), some fail once or twice (500).
The scheduled fan-out runs again and again, as its schedule would; mid-way,
PostgreSQL is killed without a checkpoint and recovers from its WAL. Row by
row afterwards: every delivery reached its end state, every device holds each
of its notifications exactly once, and gone devices hold nothing new.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from typing import Any

from tests.faults.conftest import ScheduledLoop, open_deliveries, wait_until
from tests.peers.push_service import PushService, Reply

NOTIFICATIONS_EACH = 3


class CrashingPushService(PushService):
    """Kills PostgreSQL when the `crash_at`-th push arrives, before answering it; PostgreSQL starts
    again `down_for` seconds later. With `hold`, that push is answered only once PostgreSQL accepts
    connections again (so its report finds the database back, whatever the restart took here)."""

    def __init__(self, *, crash_at: int, server: Any, down_for: float, hold: bool, **kw: Any):
        super().__init__(**kw)
        self.crash_at, self.server, self.down_for, self.hold = crash_at, server, down_for, hold
        self.restarted = threading.Event()
        self._seen = 0

    def _restart(self) -> None:
        time.sleep(self.down_for)
        self.server.start()
        self.restarted.set()

    def handle_push(self, device_id: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], str]:
        with self._lock:
            self._seen += 1
            trigger = self._seen == self.crash_at
        if trigger:
            self.server.stop("immediate")
            threading.Thread(target=self._restart, daemon=True).start()
            if self.hold:
                self.restarted.wait(300)
        return super().handle_push(device_id, headers, body)


def _arrange(sql: Any, service: PushService, devices: int = 60) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Members with two devices each, scripted; returns (kind by device id, notification ids by device id)."""
    kinds: dict[str, str] = {}
    notifications: dict[str, list[str]] = {}
    for m in range(devices // 2):
        member = sql.member("scout")
        mine = [service.new_device() for _ in range(2)]
        for i, device in enumerate(mine):
            kind = ["ok", "ok", "ok", "ok", "ok", "ok", "gone", "throttled", "flaky", "flakier"][(2 * m + i) % 10]
            kinds[device.id] = kind
            # (a gone subscription stays gone, whoever asks again)
            script = {"gone": [410] * 50, "throttled": [Reply(429, {"Retry-After": "1"})], "flaky": [500],
                      "flakier": [500, 502]}.get(kind, [])
            service.script(device, *script)
            sql.execute("INSERT INTO public.push_subscriptions (user_id, endpoint, p256dh, auth) "
                        "VALUES (%s, %s, %s, %s)", (member.id, device.endpoint, device.p256dh, device.auth))
        ids = [sql.one("INSERT INTO public.notification_queue (recipient_id, type, title, message) "
                       "VALUES (%s, 'FAULT_TEST', %s, 'hello') RETURNING id::text", (member.id, f"n{k}"))
               for k in range(NOTIFICATIONS_EACH)]
        for device in mine:
            notifications[device.id] = ids
    return kinds, notifications


def _rows(sql: Any, endpoint_by_device: dict[str, str], notification_ids: set[str]) -> dict[tuple[str, str], tuple]:
    """(device id, notification id) -> (status, attempts) for every delivery of these notifications."""
    device_by_endpoint = {e: d for d, e in endpoint_by_device.items()}
    rows = sql.execute(
        "SELECT s.endpoint, d.notification_id::text, d.status, d.attempts "
        "FROM nexus_private.push_deliveries d LEFT JOIN public.push_subscriptions s ON s.id = d.subscription_id "
        "WHERE d.notification_id = ANY(%s::uuid[])", (sorted(notification_ids),))
    return {(device_by_endpoint.get(r[0], "gone-device"), r[1]): (r[2], r[3]) for r in rows}


def _run(push_fault_env, fault_sql, crashable_pg, vapid_pair, *, hold: bool, down_for: float) -> dict:
    from functions.notifications.fanout import handler
    from shared.push import topic_for

    server, _ = crashable_pg
    with CrashingPushService(application_server_key=vapid_pair[0], latency=0.02, lifetime=120,
                             crash_at=70, server=server, down_for=down_for, hold=hold) as service:
        kinds, notifications = _arrange(fault_sql, service)
        endpoints = {d.id: d.endpoint for d in service.devices.values()}
        total = sum(len(v) for v in notifications.values())
        assert open_deliveries(fault_sql) == total

        # When the scheduled fan-out keeps running and PostgreSQL crashes mid-way
        with ScheduledLoop(lambda: handler({"source": "aws.scheduler"}, None)) as loop:
            assert service.restarted.wait(300), "the crash never happened"
            # (rows whose claim the crash ate wait out their lease, then are claimed again)
            lease = float(os.environ["PUSH_LEASE_SECONDS"])
            assert wait_until(lambda: open_deliveries(fault_sql) == 0, timeout=3 * lease + 60)
        assert loop.unexpected_failures() == {}

        received: dict[str, list[str]] = {}
        for r in service.received:
            received.setdefault(r.device_id, []).append(r.headers["topic"])
        return {"kinds": kinds, "notifications": notifications, "rows": _rows(fault_sql, endpoints, {n for ns in notifications.values() for n in ns}),
                "received": received, "topic": topic_for, "loop": loop,
                "rejected": list(service.rejected), "endpoints": endpoints}


def _assert_delivered(out: dict, fault_sql: Any, resent_at_most: int = 0, exact_attempts: bool = True) -> int:
    """Nothing lost, and at most `resent_at_most` pushes sent twice; returns how many were.

    `exact_attempts=False` where a crash may have eaten a claim's answer: the rows were leased
    without anyone sending, and are claimed again (one more attempt, no push) after the lease."""
    kinds, notifications, rows, received, topic = (out[k] for k in ("kinds", "notifications", "rows", "received",
                                                                      "topic"))
    assert out["rejected"] == []  # every push carried valid VAPID and decrypted
    resent = 0
    for device, kind in kinds.items():
        if kind == "gone":
            # Then a gone device received nothing, its subscription is deleted, its deliveries ended
            assert device not in received, (device, received.get(device))
            assert fault_sql.one("SELECT count(*) FROM public.push_subscriptions WHERE endpoint = %s",
                                 (out["endpoints"][device],)) == 0
            continue
        # Then every other device holds each of its notifications (a resend carries the same Topic,
        # so the push service replaces the undelivered copy rather than showing it twice)
        got = Counter(received.get(device, []))
        assert set(got) == {topic(n) for n in notifications[device]}, (device, kind)
        attempts = []
        for n in notifications[device]:
            status, tries = rows[(device, n)]
            assert status == "sent", (device, kind, n, status)
            copies = got[topic(n)]
            if copies > 1:
                resent += copies - 1
                assert tries >= copies, (device, n, tries, copies)  # each copy came from its own claim
            attempts.append(tries - (copies - 1))
        # ... and the scripted failures were retried, not dropped
        retried = len(attempts) + {"throttled": 1, "flaky": 1, "flakier": 2}.get(kind, 0)
        assert sum(attempts) == retried if exact_attempts else sum(attempts) >= retried, (device, kind, attempts)
    # A gone device's deliveries (their subscription is deleted, so the rows name none) all ended as gone,
    # or cancelled once another of them learnt the device was gone
    gone_devices = sum(1 for k in kinds.values() if k == "gone")
    gone_rows = [v for k, v in rows.items() if k[0] == "gone-device"]
    assert len(gone_rows) == gone_devices * NOTIFICATIONS_EACH
    assert {s for s, _ in gone_rows} <= {"gone", "cancelled"}
    assert sum(1 for s, _ in gone_rows if s == "gone") >= gone_devices
    assert resent <= resent_at_most, resent
    return resent


def test_crash_while_pushes_are_in_flight_loses_nothing_and_sends_nothing_twice(
        push_fault_env, fault_sql, crashable_pg, vapid_pair):
    # Given the crash comes while a batch is being sent, and the database is back before its report
    # (the push service answers the crashing push once PostgreSQL is back: the send's read timeout and
    # the lease outlast the restart on this machine)
    server = crashable_pg[0]
    read = min(50, server.outlasting(0.5, 4))
    push_fault_env.setenv("PUSH_READ_TIMEOUT_SECONDS", str(read))
    push_fault_env.setenv("PUSH_LEASE_SECONDS", str(2 * read + 6))
    out = _run(push_fault_env, fault_sql, crashable_pg, vapid_pair, hold=True, down_for=0.5)
    assert _assert_delivered(out, fault_sql, resent_at_most=0) == 0


def test_crash_at_report_time_loses_nothing_and_sends_nothing_twice(
        push_fault_env, fault_sql, crashable_pg, vapid_pair):
    # Given the database is down when the batch in flight reports what the push service answered
    # (its report is retried within the lease, which outlasts the restart on this machine)
    push_fault_env.setenv("PUSH_READ_TIMEOUT_SECONDS", "1")
    push_fault_env.setenv("PUSH_LEASE_SECONDS", str(crashable_pg[0].outlasting(1.5, 8)))
    out = _run(push_fault_env, fault_sql, crashable_pg, vapid_pair, hold=False, down_for=1.5)
    # Then the report waits for the database (inside the lease) rather than leaving the batch to be
    # claimed and sent again: nothing lost, nothing sent twice
    assert _assert_delivered(out, fault_sql, resent_at_most=0, exact_attempts=False) == 0
