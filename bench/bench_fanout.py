"""Push fan-out throughput: our fan-out against the predecessor's serial `webpush()` loop, in one run.

Both send to the same loopback push service, running in its own process,
which verifies every VAPID JWT and decrypts every body (tests/peers/push_service.py).
The service answers at once, then with a simulated network latency (a real
push service is tens of milliseconds away). Each side sends one notification
to each of N devices:

- naive: `for s in subscriptions: pywebpush.webpush(s, payload, vapid_private_key=..., vapid_claims=...)`:
  a new connection and a new VAPID signature per message, one at a time;
- ours: the real fan-out (functions/notifications/delivery.py): rows queued in
  notification_queue, claimed from PostgreSQL, sent by PUSH_FANOUT_CONCURRENCY
  threads over one pooled session with the cached VAPID header, reported
  back; the database work is inside our time, the naive loop has none.

Also measured, for the inline-vs-invoke decision of handle-rescue-request:
how long the flare request takes with inline delivery to its responders'
devices, and the import cost a separately invoked fan-out Lambda would add.

    .venv/bin/python -m bench.bench_fanout
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEVICES = 200
LATENCIES_MS = (0, 5, 20)
ROUNDS = 3
TARGET = 3.0
FLARE_RESPONDERS = 25
SUBJECT = "mailto:bench@nomadnexus.invalid"
JWT_SECRET = "bench-jwt-secret-that-is-long-enough-for-hs256-0123456789"
SUPABASE_URL = "https://bench.supabase.invalid"


def _vapid_keys() -> tuple[str, str]:
    import base64

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    return b64(public), b64(key.private_numbers().private_value.to_bytes(32, "big"))


class PushServiceProcess:
    """The loopback push service in its own process, so its decryption work
    does not share our interpreter's GIL."""

    def __init__(self, public_key: str):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.peers.push_service", "--lifetime", "3600",
             "--application-server-key", public_key],
            cwd=ROOT, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read() or b"null")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _env(url: str, public: str, private: str) -> dict[str, str]:
    return {"NEXUS_ENV": "dev", "DATABASE_URL": url, "SUPABASE_URL": SUPABASE_URL, "SUPABASE_JWT_SECRET": JWT_SECRET,
            "SUPABASE_JWKS_URL": "off", "NEXT_PUBLIC_VAPID_PUBLIC_KEY": public, "VAPID_PRIVATE_KEY": private,
            "VAPID_SUBJECT": SUBJECT}


def _seed_members(conn: Any, devices: list[dict[str, Any]], roles: list[str] | None = None) -> list[str]:
    ids = []
    for d in devices:
        uid = str(uuid.uuid4())
        conn.execute("INSERT INTO auth.users (id, email) VALUES (%s, %s)", (uid, f"{uid}@bench.invalid"))
        conn.execute("UPDATE public.profiles SET rank = 'scout', roles = %s WHERE id = %s", (roles or [], uid))
        conn.execute("INSERT INTO public.push_subscriptions (user_id, endpoint, p256dh, auth) VALUES (%s, %s, %s, %s)",
                     (uid, d["endpoint"], d["keys"]["p256dh"], d["keys"]["auth"]))
        ids.append(uid)
    return ids


def naive_loop(devices: list[dict[str, Any]], private: str) -> float:
    from pywebpush import webpush

    payload = json.dumps({"type": "BENCH", "title": "Bench", "body": "naive"})
    started = time.perf_counter()
    for d in devices:
        webpush({"endpoint": d["endpoint"], "keys": d["keys"]}, data=payload, vapid_private_key=private,
                vapid_claims={"sub": SUBJECT}, ttl=3600)
    return time.perf_counter() - started


def ours(conn: Any, fanout: Any, member_ids: list[str]) -> float:
    conn.execute("UPDATE nexus_private.push_deliveries SET status = 'cancelled' WHERE status IN ('pending', 'claimed')")
    conn.execute("INSERT INTO public.notification_queue (recipient_id, type, title, message) "
                 "SELECT unnest(%s::uuid[]), 'BENCH', 'Bench', 'ours'", (member_ids,))
    started = time.perf_counter()
    summary = fanout.drain(deadline=time.monotonic() + 900)  # a guard against hanging only
    elapsed = time.perf_counter() - started
    assert summary.outcomes.get("sent") == len(member_ids), summary.as_dict()
    return elapsed


def _import_ms(module: str, env: dict[str, str], runs: int = 9) -> float:
    samples = []
    for _ in range(runs + 1):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", f"import {module}"], env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
                       cwd=ROOT, check=True)
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples[1:])


def flare_request(conn: Any, service: PushServiceProcess, budget: str) -> tuple[float, int]:
    """Median time of handle-rescue-request with FLARE_RESPONDERS subscribed responders, and the fewest
    devices one of them reached inline (reported, not asserted: the budget is a time, so how many fit
    in it depends on the machine)."""
    import jwt

    from functions.notifications.rescue import app
    from shared import config
    from shared.http import call_asgi

    os.environ["PUSH_INLINE_BUDGET_SECONDS"] = budget
    config.get_settings.cache_clear()
    times, reached = [], []
    for _ in range(5):
        sender = str(uuid.uuid4())
        conn.execute("INSERT INTO auth.users (id, email) VALUES (%s, %s)", (sender, f"{sender}@bench.invalid"))
        conn.execute("UPDATE public.profiles SET rank = 'scout' WHERE id = %s", (sender,))
        now = int(time.time())
        token = jwt.encode({"sub": sender, "aud": "authenticated", "role": "authenticated",
                            "iss": f"{SUPABASE_URL}/auth/v1", "iat": now, "exp": now + 600}, JWT_SECRET)
        headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
        started = time.perf_counter()
        status, _, body = call_asgi(app, "POST", "/", headers, json.dumps({"location": "Bench", "flareType": "MEDICAL"}).encode())
        times.append((time.perf_counter() - started) * 1000)
        assert status == 202, body
        reached.append(json.loads(body)["devicesReached"])
    return statistics.median(times), min(reached)


def run() -> dict:
    import psycopg

    from nexus.migrate import prepare_local
    from nexus.pg import EmbeddedPostgres

    public, private = _vapid_keys()
    root = Path(tempfile.mkdtemp(prefix="nexus-bench-pg-"))
    server = EmbeddedPostgres(root / "data", fast=True)
    server.start()
    service = PushServiceProcess(public)
    try:
        url = server.create_database("nexus_bench")
        prepare_local(url, log=lambda *_: None)
        env = _env(url, public, private)
        os.environ.update(env)

        from functions.notifications.delivery import Fanout
        from shared import config, db

        config.get_settings.cache_clear()
        settings = config.get_settings()
        db.set_database(db.PsycopgTransport(url))
        fanout = Fanout(settings)
        conn = psycopg.connect(url, autocommit=True)
        devices = service.call("POST", "/_devices", {"count": DEVICES})
        member_ids = _seed_members(conn, devices)

        rows = []
        for latency in LATENCIES_MS:
            service.call("POST", "/_latency", {"seconds": latency / 1000})
            naive_t, ours_t = [], []
            for _ in range(ROUNDS):  # interleaved, so drift touches both alike
                naive_t.append(naive_loop(devices, private))
                ours_t.append(ours(conn, fanout, member_ids))
            stats = service.call("GET", "/_stats")
            assert stats["rejected"] == 0, stats
            rows.append((latency, DEVICES / statistics.median(naive_t), DEVICES / statistics.median(ours_t)))

        # Inline flare delivery, at the realistic latency.
        service.call("POST", "/_latency", {"seconds": LATENCIES_MS[-1] / 1000})
        responders = service.call("POST", "/_devices", {"count": FLARE_RESPONDERS})
        conn.execute("UPDATE public.profiles SET roles = '{}' WHERE 'Medic' = ANY(roles)")
        _seed_members(conn, responders, roles=["Medic"])
        flare_sql_only, _ = flare_request(conn, service, "0")
        flare_inline, flare_reached = flare_request(conn, service, "3")
        import_http = _import_ms("functions.notifications.subscribe", env)
        import_fanout = _import_ms("functions.notifications.fanout", env)
        conn.close()
        fanout.close()
    finally:
        service.stop()
        server.destroy()
        try:
            root.rmdir()
        except OSError:
            pass

    lines = [
        "## Push fan-out against the naive loop",
        "",
        f"Python {sys.version.split()[0]}, {os.cpu_count()} CPU(s); {DEVICES} devices, one notification each; "
        f"median of {ROUNDS} interleaved rounds; push service in its own process, verifying VAPID and decrypting.",
        "",
        "| push service latency | naive `webpush()` loop (msg/s) | our fan-out (msg/s) | ratio | target |",
        "|---:|---:|---:|---:|---|",
    ]
    for latency, naive, our in rows:
        ratio = our / naive
        lines.append(f"| {latency} ms | {naive:.0f} | {our:.0f} | {ratio:.1f}x | >= {TARGET:.0f}x "
                     f"({'meets' if ratio >= TARGET else 'MISSES'}) |")
    lines += [
        "",
        f"Our side includes claiming from and reporting to PostgreSQL; concurrency "
        f"{settings.PUSH_FANOUT_CONCURRENCY}, batch {settings.PUSH_FANOUT_BATCH}.",
        "",
        f"handle-rescue-request with {FLARE_RESPONDERS} responder devices at {LATENCIES_MS[-1]} ms: "
        f"{flare_inline:.0f} ms with inline delivery (3 s budget; at least {flare_reached} of {FLARE_RESPONDERS} "
        f"devices reached before the answer in every run), "
        f"{flare_sql_only:.0f} ms without. A separately invoked fan-out Lambda would start cold by importing "
        f"pywebpush and its aiohttp: `import functions.notifications.fanout` {import_fanout:.0f} ms vs "
        f"`import functions.notifications.subscribe` {import_http:.0f} ms (interpreter start included).",
        "",
    ]
    data = {"rows": [{"latency_ms": lat, "naive": naive, "ours": our} for lat, naive, our in rows],
            "flare_inline_ms": flare_inline, "flare_sql_only_ms": flare_sql_only,
            "flare_reached": flare_reached}
    return {"markdown": "\n".join(lines), "data": data}


def main() -> str:
    return run()["markdown"]


if __name__ == "__main__":
    print(main())
