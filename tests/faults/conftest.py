"""The fault suite's parts: a PostgreSQL of its own to crash, and a sender that retries like LiveKit.

The session cluster is shared by every other test and must never be stopped,
so each module here gets its own cluster, with fsync on (an acknowledgement
must survive a crash) and crash-like stops (`immediate`: no checkpoint, WAL
recovery at start).
"""

from __future__ import annotations

import math
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest

from tests import support


class CrashableServer:
    """An EmbeddedPostgres that says when it accepts connections (`up`), and how long one crash and
    WAL recovery took on this machine, now (`recovery`: measured once when the module starts).

    No deadline here is a guess at the machine's speed: a sender waits for `up` before its last
    attempt, and leases and timeouts that must outlast a restart are derived from `recovery`.
    """

    def __init__(self, server: Any):
        self.server = server
        self.up = threading.Event()
        self.recovery = 0.0

    def start(self) -> None:
        self.server.start()  # returns once pg_isready answers
        self.up.set()

    def stop(self, mode: str = "fast") -> None:
        self.up.clear()
        self.server.stop(mode)

    def measure_recovery(self) -> float:
        self.stop("immediate")
        started = time.monotonic()
        self.start()
        self.recovery = time.monotonic() - started
        return self.recovery

    def outlasting(self, down_for: float, floor: float) -> int:
        """Seconds that outlast a crash kept down `down_for` s on this machine, with a wide margin."""
        return max(int(floor), math.ceil(down_for + 5 * self.recovery + 3))


@pytest.fixture(scope="module")
def crashable_pg():
    from nexus.migrate import prepare_local
    from nexus.pg import EmbeddedPostgres

    root = Path(tempfile.mkdtemp(prefix="nexus-faults-"))
    server = CrashableServer(EmbeddedPostgres(root / "data"))
    server.start()
    try:
        url = server.server.create_database("faults")
        prepare_local(url, log=lambda *_: None)
        server.measure_recovery()
        yield server, url
    finally:
        server.server.destroy()
        try:
            root.rmdir()
        except OSError:
            pass


@pytest.fixture
def fault_env(env, crashable_pg):
    """`env` with the functions pointed at the crashable cluster."""
    from shared import config, db

    _, url = crashable_pg
    env.setenv("DATABASE_URL", url)
    config.get_settings.cache_clear()
    db.set_database(None)
    yield env
    db.set_database(None)


class ReconnectingDb(support.Db):
    """support.Db that opens a fresh connection when a crash broke the last one."""

    def execute(self, sql: str, params: Any = None) -> list[tuple]:
        import psycopg

        try:
            return super().execute(sql, params)
        except psycopg.OperationalError:
            if not (self.conn.closed or self.conn.broken):
                raise
        self.conn = psycopg.connect(self.url, autocommit=True)
        return super().execute(sql, params)


@pytest.fixture
def fault_sql(crashable_pg):
    """Direct SQL on the crashable cluster, reconnecting after a crash."""
    _, url = crashable_pg
    d = ReconnectingDb(url)
    yield d
    d.close()


def crash_and_restart(server: Any, down_for: float) -> dict[str, float]:
    """Kill PostgreSQL like a crash, keep it down `down_for` seconds, start it (WAL recovery)."""
    started = time.monotonic()
    server.stop("immediate")
    time.sleep(down_for)
    server.start()
    return {"down": down_for, "total": time.monotonic() - started}


@dataclass
class RetryPolicy:
    """LiveKit's webhook retries: 5 attempts, exponential backoff from 1 s to at most 30 s.

    `scale` shrinks every wait by the same factor so the test stays fast while the shape
    (attempt count, doubling, cap) stays LiveKit's. LiveKit's real window (15 s) outlasts a
    PostgreSQL restart; a scaled one need not on a loaded machine, so with `recovered` (a
    CrashableServer's `up`) the last attempt also waits until the database accepts connections
    again: a delivery given up then is our defect, never the machine's speed.
    """

    attempts: int = 5
    first: float = 1.0
    cap: float = 30.0
    scale: float = 1.0
    recovered: threading.Event | None = None

    def waits(self) -> list[float]:
        return [min(self.cap, self.first * 2 ** i) * self.scale for i in range(self.attempts - 1)]


@dataclass
class Delivery:
    key: str
    statuses: list[int] = field(default_factory=list)

    @property
    def acked(self) -> bool:
        return bool(self.statuses) and self.statuses[-1] == 200


class RetryingSender:
    """Delivers items with `send(item) -> (status, headers)` from several threads, retrying each
    non-2xx answer per `policy`, and gives up after the last attempt as LiveKit does."""

    def __init__(self, send: Callable[[Any], tuple[int, dict[str, str]]], policy: RetryPolicy, threads: int = 8):
        self.send, self.policy, self.threads = send, policy, threads
        self.deliveries: list[Delivery] = []
        self.retry_after_missing: list[str] = []
        self._lock = threading.Lock()

    def deliver_one(self, key: str, item: Any) -> Delivery:
        record = Delivery(key)
        waits = self.policy.waits()
        for attempt in range(self.policy.attempts):
            status, headers = self.send(item)
            record.statuses.append(status)
            if status == 200:
                break
            if status == 503 and not headers.get("retry-after"):
                with self._lock:
                    self.retry_after_missing.append(key)
            if attempt < len(waits):
                time.sleep(waits[attempt])
            if attempt == self.policy.attempts - 2 and self.policy.recovered is not None:
                assert self.policy.recovered.wait(300), "PostgreSQL did not come back"
        with self._lock:
            self.deliveries.append(record)
        return record

    def run(self, items: list[tuple[str, Any]], started: threading.Event | None = None) -> None:
        queue = list(items)
        lock = threading.Lock()

        def worker() -> None:
            while True:
                with lock:
                    if not queue:
                        return
                    key, item = queue.pop(0)
                self.deliver_one(key, item)
                if started is not None:
                    started.set()

        threads = [threading.Thread(target=worker, daemon=True) for _ in range(self.threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)

    def status_counts(self) -> Counter:
        return Counter(s for d in self.deliveries for s in d.statuses)

    def given_up(self) -> list[Delivery]:
        return [d for d in self.deliveries if not d.acked]


def webhook_sender(lambda_context: Any) -> Callable[[tuple[bytes, dict[str, str]]], tuple[int, dict[str, str]]]:
    """One delivery through the Lambda entry point, as a Function URL invocation."""
    from functions.livekit_webhook.app import handler
    from tests.integration.livekit_webhook import events as ev

    def send(item: tuple[bytes, dict[str, str]]) -> tuple[int, dict[str, str]]:
        body, headers = item
        out = handler(ev.function_url_event(body, headers, b64=True), lambda_context)
        return out["statusCode"], {k.lower(): v for k, v in (out.get("headers") or {}).items()}

    return send


@pytest.fixture(scope="module")
def vapid_pair() -> tuple[str, str]:
    import base64

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    return b64(public), b64(key.private_numbers().private_value.to_bytes(32, "big"))


@pytest.fixture
def push_fault_env(fault_env, vapid_pair, fault_sql, crashable_pg):
    """Notifications configured for a loopback push service, with fast retries and a short lease."""
    public, private = vapid_pair
    for k, v in {
        "NEXUS_ENV": "dev",
        "NEXT_PUBLIC_VAPID_PUBLIC_KEY": public,
        "VAPID_PRIVATE_KEY": private,
        "VAPID_SUBJECT": "mailto:ops@nomadnexus.test",
        "PUSH_RETRY_BASE_SECONDS": "0",
        "PUSH_CONNECT_TIMEOUT_SECONDS": "1",
        "PUSH_READ_TIMEOUT_SECONDS": "4",
        # a report retried while PostgreSQL restarts ends within the lease, however slow the restart here
        "PUSH_LEASE_SECONDS": str(crashable_pg[0].outlasting(2.0, 12)),
        "PUSH_FANOUT_CONCURRENCY": "8",
        "PUSH_FANOUT_BATCH": "16",
    }.items():
        fault_env.setenv(k, v)
    fault_sql.execute("UPDATE nexus_private.push_deliveries SET status = 'cancelled', claim_token = NULL "
                      "WHERE status IN ('pending', 'claimed')")
    from functions.notifications import delivery

    delivery._fanout = None  # a container per test: settings differ
    yield fault_env
    if delivery._fanout is not None:
        delivery._fanout.close()
        delivery._fanout = None


def open_deliveries(sql: Any) -> int:
    return sql.one("SELECT count(*) FROM nexus_private.push_deliveries WHERE status IN ('pending', 'claimed')")


class ScheduledLoop:
    """Runs a scheduled job again and again, as the every-minute schedule would (sped up): a run
    that fails because the database is down is simply followed by the next one."""

    def __init__(self, job: Callable[[], Any], every: float = 0.05):
        self.job, self.every = job, every
        self.failures: Counter = Counter()
        self.runs = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        from shared.errors import ApiError

        while not self._stop.is_set():
            try:
                self.job()
            except ApiError as e:  # db.call's 503 for an unreachable database
                self.failures["DatabaseUnavailable" if e.code == "UNAVAILABLE" else f"ApiError {e.code}"] += 1
            except Exception as e:  # surfaced by the test through `failures`
                self.failures[f"{type(e).__name__}: {e}"[:200]] += 1
            self.runs += 1
            self._stop.wait(self.every)

    def __enter__(self) -> "ScheduledLoop":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(60)

    def unexpected_failures(self) -> dict[str, int]:
        return {k: v for k, v in self.failures.items() if k != "DatabaseUnavailable"}


def wait_until(predicate: Callable[[], bool], timeout: float, every: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return True
        except Exception:
            pass  # the database may be restarting
        time.sleep(every)
    return predicate()
