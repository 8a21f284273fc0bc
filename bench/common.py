"""What the benchmarks share: a throwaway PostgreSQL, a Lambda-like environment, signed tokens,
Function URL events, and side-by-side timing.

Every figure in the report is a ratio of two measurements made in the same run,
interleaved so that load from elsewhere on the machine touches both alike.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

ROOT = Path(__file__).resolve().parent.parent
JWT_SECRET = "bench-jwt-secret-that-is-long-enough-for-hs256-0123456789"
SUPABASE_URL = "https://bench.supabase.invalid"
ISSUER = f"{SUPABASE_URL}/auth/v1"
LIVEKIT_KEY = "APIbench"
LIVEKIT_SECRET = "bench-livekit-secret-0123456789abcdef0123456789abcdef"
VAPID_SUBJECT = "mailto:bench@nomadnexus.invalid"
FLOOR_IMPORTS = "import jwt, psycopg, pydantic, mangum"


@contextlib.contextmanager
def postgres(fsync: bool = False, name: str = "nexus_bench") -> Iterator[str]:
    """A migrated database on a PostgreSQL cluster of its own; destroyed afterwards."""
    from nexus.migrate import prepare_local
    from nexus.pg import EmbeddedPostgres

    root = Path(tempfile.mkdtemp(prefix="nexus-bench-"))
    server = EmbeddedPostgres(root / "data", fast=not fsync)
    server.start()
    try:
        url = server.create_database(name)
        prepare_local(url, log=lambda *_: None)
        yield url
    finally:
        server.destroy()
        with contextlib.suppress(OSError):
            root.rmdir()


def vapid_keys() -> tuple[str, str]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    return b64(public), b64(key.private_numbers().private_value.to_bytes(32, "big"))


def lambda_env(database_url: str, function: str = "bench", **extra: str) -> dict[str, str]:
    """The environment a deployed function sees (production mode, so init-time checks run)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SUPABASE_", "LIVEKIT_", "DATABASE_", "VAPID_", "NEXT_PUBLIC_", "PUSH_"))}
    public, private = extra.pop("vapid", None) or vapid_keys()
    env.update({
        "AWS_LAMBDA_FUNCTION_NAME": function,
        "NEXUS_ENV": "production",
        "DATABASE_URL": database_url,
        "SUPABASE_URL": SUPABASE_URL,
        "SUPABASE_JWT_SECRET": JWT_SECRET,
        "SUPABASE_JWKS_URL": "off",
        "LIVEKIT_URL": "wss://bench.livekit.invalid",
        "LIVEKIT_API_KEY": LIVEKIT_KEY,
        "LIVEKIT_API_SECRET": LIVEKIT_SECRET,
        "NEXT_PUBLIC_VAPID_PUBLIC_KEY": public,
        "VAPID_PRIVATE_KEY": private,
        "VAPID_SUBJECT": VAPID_SUBJECT,
        "LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(ROOT),
    })
    env.update(extra)
    return env


def access_token(user_id: str, ttl: int = 86400) -> str:
    import jwt

    now = int(time.time())
    return jwt.encode({"sub": user_id, "aud": "authenticated", "role": "authenticated", "iss": ISSUER,
                       "iat": now, "exp": now + ttl, "email": "bench@bench.invalid"}, JWT_SECRET, algorithm="HS256")


def verify_access_token(token: str) -> dict:
    """What any member request must do at least: verify the Supabase token."""
    import jwt

    return jwt.decode(token, JWT_SECRET, algorithms=["HS256"], audience="authenticated", issuer=ISSUER,
                      leeway=30, options={"require": ["exp", "sub", "aud", "iss"]})


def sign_webhook(body: bytes) -> str:
    import hashlib

    import jwt

    now = int(time.time())
    digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
    return jwt.encode({"iss": LIVEKIT_KEY, "sub": "", "nbf": now, "exp": now + 3600, "sha256": digest},
                      LIVEKIT_SECRET, algorithm="HS256")


def function_url_event(body: bytes | None, headers: dict[str, str], method: str = "POST") -> dict:
    """A Lambda Function URL invocation (payload format 2.0)."""
    return {
        "version": "2.0", "routeKey": "$default", "rawPath": "/", "rawQueryString": "",
        "headers": {"host": "bench.lambda-url.eu-north-1.on.aws", "x-forwarded-proto": "https",
                    "x-forwarded-port": "443", "user-agent": "bench", **headers},
        "requestContext": {"http": {"method": method, "path": "/", "protocol": "HTTP/1.1",
                                    "sourceIp": "203.0.113.7", "userAgent": "bench"},
                           "requestId": "bench", "routeKey": "$default", "stage": "$default"},
        "body": base64.b64encode(body).decode() if body is not None else None,
        "isBase64Encoded": body is not None,
    }


def member_event(token: str, body: Any, method: str = "POST") -> dict:
    raw = None if body is None else json.dumps(body).encode()
    return function_url_event(raw, {"content-type": "application/json", "authorization": f"Bearer {token}"}, method)


def new_member(conn: Any, rank: str = "scout", roles: list[str] | None = None) -> str:
    uid = str(uuid.uuid4())
    conn.execute("INSERT INTO auth.users (id, email) VALUES (%s, %s)", (uid, f"{uid}@bench.invalid"))
    conn.execute("UPDATE public.profiles SET rank = %s, roles = %s WHERE id = %s", (rank, roles or [], uid))
    return uid


def new_members(conn: Any, count: int, rank: str = "scout") -> list[str]:
    """`count` fresh members at once (a benchmark gives each rate-limited request its own member
    rather than loosening the limit)."""
    ids = [r[0] for r in conn.execute(
        "INSERT INTO auth.users (id, email) SELECT gen_random_uuid(), gen_random_uuid() || '@bench.invalid' "
        "FROM generate_series(1, %s) RETURNING id::text", (count,)).fetchall()]
    conn.execute("UPDATE public.profiles SET rank = %s WHERE id = ANY(%s::uuid[])", (rank, ids))
    return ids


# -- timing ---------------------------------------------------------------------------------------

def per_call_us(fn: Callable[[], Any], iterations: int) -> float:
    """Mean time per call over one block, in microseconds."""
    started = time.perf_counter_ns()
    for _ in range(iterations):
        fn()
    return (time.perf_counter_ns() - started) / iterations / 1000


def paired(floor: Callable[[], Any], subject: Callable[[], Any], iterations: int, rounds: int) -> dict[str, float]:
    """Blocks of floor and subject side by side, order alternating, after one warm-up block each.

    Returns medians of each and the median of the side-by-side ratios subject/floor.
    """
    per_call_us(floor, iterations)
    per_call_us(subject, iterations)
    xs, ys = [], []
    for i in range(rounds):
        if i % 2 == 0:
            xs.append(per_call_us(floor, iterations))
            ys.append(per_call_us(subject, iterations))
        else:
            ys.append(per_call_us(subject, iterations))
            xs.append(per_call_us(floor, iterations))
    return {"floor": statistics.median(xs), "subject": statistics.median(ys),
            "ratio": statistics.median(y / x for x, y in zip(xs, ys))}


def pool(items: list[Any]) -> Callable[[], Any]:
    """Hands out items one per call (work that must not repeat, e.g. a distinct event)."""
    it = iter(items)
    return lambda: next(it)


def machine() -> str:
    import platform
    import sys

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"Python {sys.version.split()[0]} on {platform.system()} {platform.machine()}, "
            f"{os.cpu_count()} CPU(s), load average {load:.2f} at start")


def in_namespace(module: str, timeout: float = 1500) -> dict[str, Any]:
    """Outside a network namespace: build the pinned livekit-server if needed, then run
    `python -m <module> OUT.json` in a loopback-only namespace (nexus/netns.py); its JSON."""
    import subprocess
    import sys

    from nexus import netns
    from nexus.livekit_server import ensure_binary

    reason = netns.unavailable_reason()
    if reason:
        raise SystemExit(f"{module} needs a network namespace: {reason}")
    binary = ensure_binary()
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = Path(f.name)
    try:
        env = {**os.environ, "NEXUS_LIVEKIT_SERVER_BIN": str(binary)}
        done = netns.run([sys.executable, "-m", module, str(out)], env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                         timeout=timeout)
        if done.returncode != 0:
            raise SystemExit(f"{module} failed inside the namespace (exit {done.returncode})")
        return json.loads(out.read_text())
    finally:
        out.unlink(missing_ok=True)


@contextlib.contextmanager
def livekit_stack(database_url: str) -> Iterator[Any]:
    """Inside the namespace: livekit-server with its webhooks to the functions (the local gateway in
    a thread of this process, configured like a deployed function through os.environ); the server."""
    import threading

    import uvicorn

    from nexus.livekit_server import LiveKitServer, free_port

    functions_port = free_port()
    server = LiveKitServer(LIVEKIT_KEY, LIVEKIT_SECRET, binary=Path(os.environ["NEXUS_LIVEKIT_SERVER_BIN"]),
                           webhook_urls=[f"http://127.0.0.1:{functions_port}/functions/v1/livekit-webhook"],
                           log_level="warn")
    server.start()
    env = lambda_env(database_url, LIVEKIT_URL=server.url, LOG_LEVEL="ERROR")
    env.pop("AWS_LAMBDA_FUNCTION_NAME", None)  # no metric lines on stdout
    os.environ.clear()
    os.environ.update(env)
    from nexus.gateway import Gateway

    gateway = uvicorn.Server(uvicorn.Config(Gateway(), host="127.0.0.1", port=functions_port, lifespan="off",
                                            log_level="error"))
    threading.Thread(target=gateway.run, daemon=True).start()
    while not gateway.started:
        time.sleep(0.05)
    try:
        yield server
    finally:
        gateway.should_exit = True
        server.stop()
