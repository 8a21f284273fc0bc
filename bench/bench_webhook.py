"""livekit-webhook: ingestion throughput and acknowledgement latency against their floor.

Eight concurrent senders push signed LiveKit events (joins, leaves, room
events, track events; distinct ids) through the Lambda `handler` as Function
URL events with base64 bodies, on an embedded PostgreSQL with fsync on (the
200 means durable). The floor is the irreducible work of one delivery done
with the bare libraries by the same eight senders: verify the webhook JWT
and the body hash with PyJWT, and one INSERT of the event into a table. Both
runs use the same events and the same database, back to back.

Also checked: `python -X importtime -c "import functions.livekit_webhook.app"`
must not import aiohttp or livekit.api (its cold start is bench_cold's).

    .venv/bin/python -m bench.bench_webhook          # or: make bench
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
SENDERS = 8
EVENTS = int(os.environ.get("NEXUS_BENCH_WEBHOOK_EVENTS", "6000"))
TARGET_RATE = 1000.0  # events/s
TARGET_P99_MS = 50.0
LIVEKIT_KEY = "APIbench"
LIVEKIT_SECRET = "bench-livekit-secret-0123456789abcdef0123456789abcdef"
HEAVY = ("aiohttp", "livekit.api", "livekit.protocol", "google.protobuf", "supabase", "boto3", "pywebpush")


def lambda_env(database_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SUPABASE_", "LIVEKIT_", "DATABASE_"))}
    env.update({
        "AWS_LAMBDA_FUNCTION_NAME": "livekit-webhook",
        "NEXUS_ENV": "production",
        "DATABASE_URL": database_url,
        "LIVEKIT_URL": "wss://bench.livekit.invalid",
        "LIVEKIT_API_KEY": LIVEKIT_KEY,
        "LIVEKIT_API_SECRET": LIVEKIT_SECRET,
        "LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(ROOT),
        # The events' member ids have no profile, so each join would be judged and removed inline
        # through RoomService (issue 25) against a LiveKit that is not there. This measures ingestion
        # and acknowledgement; the join check's own cost against the real server is bench_brig's.
        "LIVEKIT_ACCESS_INLINE_BUDGET_SECONDS": "0",
    })
    return env


# -- events ---------------------------------------------------------------------------------------

def _sign(body: bytes) -> str:
    # valid for an hour: events are signed up front and a slow machine may take minutes to send them
    import jwt

    now = int(time.time())
    digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
    return jwt.encode({"iss": LIVEKIT_KEY, "sub": "", "nbf": now, "exp": now + 3600, "sha256": digest},
                      LIVEKIT_SECRET, algorithm="HS256")


def _events(n: int) -> list[dict]:
    """A LiveKit-like mix over 300 rooms: sessions join and leave, rooms start, tracks publish."""
    out: list[dict] = []
    t = time.time() - 3600
    i = 0
    while len(out) < n:
        room, room_sid = f"bench-{i % 300}", f"RM_bench{i % 300}"
        sid, identity = f"PA_{uuid.uuid4().hex[:12]}", str(uuid.uuid4())
        t += 0.01
        participant = {"sid": sid, "identity": identity, "name": "Bench", "joinedAt": str(int(t)),
                       "joinedAtMs": str(int(t * 1000)), "state": "ACTIVE",
                       "metadata": json.dumps({"userId": identity, "rank": "scout"})}
        base = {"room": {"sid": room_sid, "name": room}}
        out.append({"event": "participant_joined", "id": f"EV_{uuid.uuid4().hex}", "createdAt": str(int(t)),
                    **base, "participant": participant})
        out.append({"event": "track_published", "id": f"EV_{uuid.uuid4().hex}", "createdAt": str(int(t)),
                    **base, "participant": participant, "track": {"sid": f"TR_{sid}", "type": "AUDIO"}})
        out.append({"event": "participant_left", "id": f"EV_{uuid.uuid4().hex}", "createdAt": str(int(t + 5)),
                    **base, "participant": {**participant, "state": "DISCONNECTED",
                                            "disconnectReason": "CLIENT_INITIATED"}})
        if i % 10 == 0:
            out.append({"event": "room_started", "id": f"EV_{uuid.uuid4().hex}", "createdAt": str(int(t)),
                        "room": {"sid": room_sid, "name": room, "creationTime": str(int(t))}})
        i += 1
    return out[:n]


def _function_url_event(body: bytes, token: str) -> dict:
    return {
        "version": "2.0", "routeKey": "$default", "rawPath": "/", "rawQueryString": "",
        "headers": {"host": "bench.lambda-url.eu-north-1.on.aws", "x-forwarded-proto": "https",
                    "x-forwarded-port": "443", "content-type": "application/webhook+json",
                    "authorization": token, "user-agent": "Go-http-client/1.1"},
        "requestContext": {"http": {"method": "POST", "path": "/", "protocol": "HTTP/1.1",
                                    "sourceIp": "203.0.113.7", "userAgent": "Go-http-client/1.1"},
                           "requestId": "bench", "routeKey": "$default", "stage": "$default"},
        "body": base64.b64encode(body).decode(),
        "isBase64Encoded": True,
    }


# -- load -----------------------------------------------------------------------------------------

def _load(work: Callable[[Any], None], items: list[Any], senders: int, setup: Callable[[], None]) -> dict:
    """Run `work(item)` over items from `senders` threads; wall-clock rate and per-item latency."""
    chunks = [items[k::senders] for k in range(senders)]
    latencies: list[list[float]] = [[] for _ in range(senders)]
    ready = threading.Barrier(senders + 1)
    errors: list[BaseException] = []

    def sender(k: int) -> None:
        try:
            setup()
            ready.wait()
            lat = latencies[k]
            for item in chunks[k]:
                started = time.perf_counter()
                work(item)
                lat.append(time.perf_counter() - started)
        except BaseException as e:  # surfaced below
            errors.append(e)
            try:
                ready.abort()
            except Exception:
                pass

    threads = [threading.Thread(target=sender, args=(k,)) for k in range(senders)]
    for th in threads:
        th.start()
    ready.wait()
    started = time.perf_counter()
    for th in threads:
        th.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise errors[0]
    flat = sorted(x for lat in latencies for x in lat)
    return {"rate": len(items) / elapsed, "p50_ms": flat[len(flat) // 2] * 1000,
            "p99_ms": flat[int(len(flat) * 0.99) - 1] * 1000, "n": len(items)}


def throughput(database_url: str) -> dict[str, dict]:
    import jwt
    import psycopg

    os.environ.update(lambda_env(database_url))
    events = _events(EVENTS * 2)
    signed = []
    for e in events:
        body = json.dumps(e, separators=(",", ":")).encode()
        signed.append((body, _sign(body)))
    handler_items = [_function_url_event(b, t) for b, t in signed[:EVENTS]]
    floor_items = signed[EVENTS:]

    from functions.livekit_webhook.app import handler

    # Warm the container as Lambda would have: one delivery per sender thread happens in setup.
    def handler_setup() -> None:
        asyncio.set_event_loop(asyncio.new_event_loop())  # mangum runs on the thread's loop

    def deliver(event: dict) -> None:
        out = handler(event, None)
        if out["statusCode"] != 200:
            raise RuntimeError(out)

    # The floor: verify + one INSERT, one connection per sender.
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS bench_floor (event_id text PRIMARY KEY, payload jsonb NOT NULL)")
    local = threading.local()

    def floor_setup() -> None:
        local.conn = psycopg.connect(database_url, autocommit=True, prepare_threshold=None)

    def floor(item: tuple[bytes, str]) -> None:
        body, token = item
        claims = jwt.decode(token, LIVEKIT_SECRET, algorithms=["HS256"], issuer=LIVEKIT_KEY, leeway=60,
                            options={"require": ["exp", "iss"]})
        if not hmac.compare_digest(base64.b64decode(claims["sha256"]), hashlib.sha256(body).digest()):
            raise RuntimeError("hash")
        local.conn.execute("INSERT INTO bench_floor (event_id, payload) VALUES (%s, %s::jsonb)",
                           (uuid.uuid4().hex, body.decode()))

    # Warm-up outside the timing: connections, caches, the first plans.
    warm_events = [_function_url_event(b, t) for b, t in (
        (body, _sign(body)) for body in (json.dumps(e).encode() for e in _events(SENDERS * 20)))]
    _load(deliver, warm_events, SENDERS, handler_setup)
    floor_result = _load(floor, floor_items, SENDERS, floor_setup)
    handler_result = _load(deliver, handler_items, SENDERS, handler_setup)
    with psycopg.connect(database_url, autocommit=True) as conn:
        stored = conn.execute("SELECT count(*) FROM nexus_private.livekit_webhook_jobs").fetchone()[0]
        done = conn.execute("SELECT count(*) FROM nexus_private.livekit_webhook_jobs WHERE status = 'done'").fetchone()[0]
    return {"handler": handler_result, "floor": floor_result, "stored": {"all": stored, "done": done}}


# -- imports --------------------------------------------------------------------------------------

def heavy_imports(env: dict[str, str]) -> list[str]:
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", "import functions.livekit_webhook.app"],
                          env=env, cwd=ROOT, capture_output=True, text=True, check=True)
    modules = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if "|" in line}
    return sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY))


# -- report ---------------------------------------------------------------------------------------

def report(t: dict, heavy: list[str]) -> str:
    h, f = t["handler"], t["floor"]
    rate_ok = "meets" if h["rate"] >= TARGET_RATE else "MISSES"
    p99_ok = "meets" if h["p99_ms"] < TARGET_P99_MS else "MISSES"
    return "\n".join([
        "## Webhook ingestion: throughput and acknowledgement latency",
        "",
        f"{SENDERS} concurrent senders (threads) calling the Lambda `handler` with Function URL events (base64 "
        f"bodies), {h['n']} distinct signed events (joins, leaves, track and room events over 300 rooms), embedded "
        "PostgreSQL with fsync on (a 200 means durable). Floor: the same senders doing only what no delivery can "
        "skip, PyJWT verification with the body-hash check and one INSERT of the event.",
        "",
        "| measure | via `handler` | floor: verify + one INSERT | ratio | target |",
        "|---|---:|---:|---:|---|",
        f"| throughput (events/s) | {h['rate']:.0f} | {f['rate']:.0f} | {f['rate'] / h['rate']:.2f}x slower | "
        f">= {TARGET_RATE:.0f} ({rate_ok}) |",
        f"| ack latency p50 (ms) | {h['p50_ms']:.2f} | {f['p50_ms']:.2f} | {h['p50_ms'] / f['p50_ms']:.2f}x | |",
        f"| ack latency p99 (ms) | {h['p99_ms']:.2f} | {f['p99_ms']:.2f} | {h['p99_ms'] / f['p99_ms']:.2f}x | "
        f"< {TARGET_P99_MS:.0f} ({p99_ok}) |",
        "",
        f"Stored: {t['stored']['done']} of {t['stored']['all']} jobs done on arrival (includes warm-up). "
        f"Heavy modules imported by `functions.livekit_webhook.app`: {', '.join(heavy) or 'none'}.",
        "",
    ])


def run() -> dict:
    from nexus.migrate import prepare_local
    from nexus.pg import EmbeddedPostgres

    root = Path(tempfile.mkdtemp(prefix="nexus-bench-webhook-"))
    server = EmbeddedPostgres(root / "data")  # fsync on: an acknowledgement means durable
    server.start()
    try:
        url = server.create_database("nexus_bench")
        prepare_local(url, log=lambda *_: None)
        env = lambda_env(url)
        heavy = heavy_imports(env)
        t = throughput(url)
    finally:
        server.destroy()
        try:
            root.rmdir()
        except OSError:
            pass
    return {"markdown": report(t, heavy), "data": {"handler": t["handler"], "floor": t["floor"]}}


def main() -> str:
    return run()["markdown"]


if __name__ == "__main__":
    print(main())
