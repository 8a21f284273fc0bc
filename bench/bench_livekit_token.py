"""livekit-token: cold import and warm request time, each against its floor, in one run.

Cold: fresh `python -c "import functions.livekit_token.app"` processes (with a
Lambda-like environment, so the init-time settings check runs) against the
floor `python -c "import jwt, psycopg, pydantic, mangum"`; medians, runs
interleaved so drift hits both alike.

Warm: the Lambda `handler` answering a Function URL event on a warm container,
against the irreducible work of that request done with the bare libraries on
the same embedded PostgreSQL: verify one HS256 access token, one SQL round
trip of `livekit_token_context`, sign one LiveKit token.

    .venv/bin/python -m bench.bench_livekit_token      # or: make bench
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
FLOOR_IMPORTS = "import jwt, psycopg, pydantic, mangum"
APP_IMPORT = "import functions.livekit_token.app"
TARGET_COLD = 1.25
TARGET_WARM = 1.5

JWT_SECRET = "bench-jwt-secret-that-is-long-enough-for-hs256-0123456789"
SUPABASE_URL = "https://bench.supabase.invalid"
ISSUER = f"{SUPABASE_URL}/auth/v1"
LIVEKIT_KEY = "APIbench"
LIVEKIT_SECRET = "bench-livekit-secret-0123456789abcdef0123456789abcdef"


def lambda_env(database_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SUPABASE_", "LIVEKIT_", "DATABASE_"))}
    env.update({
        "AWS_LAMBDA_FUNCTION_NAME": "livekit-token",
        "NEXUS_ENV": "production",
        "DATABASE_URL": database_url,
        "SUPABASE_URL": SUPABASE_URL,
        "SUPABASE_JWT_SECRET": JWT_SECRET,
        "SUPABASE_JWKS_URL": "off",
        "LIVEKIT_URL": "wss://bench.livekit.invalid",
        "LIVEKIT_API_KEY": LIVEKIT_KEY,
        "LIVEKIT_API_SECRET": LIVEKIT_SECRET,
        "PYTHONPATH": str(ROOT),
    })
    return env


# -- cold -------------------------------------------------------------------------------------

def _run(code: str, env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, check=True)
    return (time.perf_counter() - started) * 1000


def cold(env: dict[str, str], runs: int = 21) -> dict[str, float]:
    programs = {
        "bare": "pass",
        "floor": FLOOR_IMPORTS,
        "app": APP_IMPORT,
        # What a DATABASE_URL container has loaded once its first query ran.
        "app+psycopg": APP_IMPORT + "; import psycopg",
    }
    for code in programs.values():  # warm the OS page cache and .pyc files
        _run(code, env)
    samples: dict[str, list[float]] = {name: [] for name in programs}
    for i in range(runs):
        order = list(programs.items())
        for name, code in (order if i % 2 == 0 else order[::-1]):
            samples[name].append(_run(code, env))
    out = {name: statistics.median(xs) for name, xs in samples.items()}
    # Ratios of runs made side by side, so load from elsewhere cancels out.
    out["ratio"] = statistics.median(a / f for a, f in zip(samples["app"], samples["floor"]))
    out["ratio+psycopg"] = statistics.median(a / f for a, f in zip(samples["app+psycopg"], samples["floor"]))
    return out


# -- warm -------------------------------------------------------------------------------------

def _per_call_us(fn: Callable[[], Any], iterations: int) -> float:
    """Mean time per call over one block, in microseconds."""
    started = time.perf_counter_ns()
    for _ in range(iterations):
        fn()
    return (time.perf_counter_ns() - started) / iterations / 1000


def _paired(a: Callable[[], Any], b: Callable[[], Any], iterations: int, rounds: int) -> tuple[float, float, float]:
    """Blocks of a and b side by side, order alternating: (median a, median b, median of b/a)."""
    for _ in range(iterations):
        a()
        b()
    xs, ys = [], []
    for i in range(rounds):
        if i % 2 == 0:
            xs.append(_per_call_us(a, iterations))
            ys.append(_per_call_us(b, iterations))
        else:
            ys.append(_per_call_us(b, iterations))
            xs.append(_per_call_us(a, iterations))
    return statistics.median(xs), statistics.median(ys), statistics.median(y / x for x, y in zip(xs, ys))


def _seed(database_url: str) -> tuple[str, str]:
    import psycopg

    user_id, room = str(uuid.uuid4()), "bench-net"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO auth.users (id, email) VALUES (%s, %s)", (user_id, f"{user_id}@bench.invalid"))
        conn.execute("UPDATE public.profiles SET rank = 'founder', callsign = 'Bench' WHERE id = %s", (user_id,))
        conn.execute("INSERT INTO public.voice_nets (code, label, min_rank_to_join, min_rank_to_rx, min_rank_to_tx) "
                     "VALUES (%s, 'Bench net', 'scout', 'scout', 'voyager') ON CONFLICT (code) DO NOTHING", (room,))
    return user_id, room


def _access_token(user_id: str) -> str:
    import jwt

    now = int(time.time())
    return jwt.encode({"sub": user_id, "aud": "authenticated", "role": "authenticated", "iss": ISSUER,
                       "iat": now, "exp": now + 86400, "email": "bench@bench.invalid"}, JWT_SECRET, algorithm="HS256")


def _function_url_event(token: str, room: str) -> dict:
    return {
        "version": "2.0", "routeKey": "$default", "rawPath": "/", "rawQueryString": "",
        "headers": {"host": "bench.lambda-url.eu-north-1.on.aws", "x-forwarded-proto": "https",
                    "x-forwarded-port": "443", "content-type": "application/json",
                    "authorization": f"Bearer {token}", "user-agent": "bench"},
        "requestContext": {"http": {"method": "POST", "path": "/", "protocol": "HTTP/1.1",
                                    "sourceIp": "203.0.113.7", "userAgent": "bench"},
                           "requestId": "bench", "routeKey": "$default", "stage": "$default"},
        "body": json.dumps({"roomName": room, "participantName": "Bench"}),
        "isBase64Encoded": False,
    }


def warm(database_url: str, iterations: int = 300, rounds: int = 15) -> dict[str, float]:
    import jwt
    import psycopg

    os.environ.update(lambda_env(database_url))
    user_id, room = _seed(database_url)
    token = _access_token(user_id)

    # The floor: the same three pieces of work with the bare libraries.
    conn = psycopg.connect(database_url, autocommit=True, prepare_threshold=None)
    sql = "SELECT public.livekit_token_context(p_user_id => %(p_user_id)s, p_room => %(p_room)s)"
    args = {"p_user_id": user_id, "p_room": room}

    def verify() -> Any:
        return jwt.decode(token, JWT_SECRET, algorithms=["HS256"], audience="authenticated", issuer=ISSUER,
                          leeway=30, options={"require": ["exp", "sub", "aud", "iss"]})

    def query() -> Any:
        return conn.execute(sql, args).fetchone()[0]

    def sign() -> str:
        now = int(time.time())
        return jwt.encode({"iss": LIVEKIT_KEY, "sub": user_id, "nbf": now, "exp": now + 3600, "name": "Bench",
                           "video": {"roomJoin": True, "room": room, "canSubscribe": True, "canPublish": True,
                                     "canPublishData": True, "canUpdateOwnMetadata": False},
                           "metadata": json.dumps({"userId": user_id, "rank": "founder"})},
                          LIVEKIT_SECRET, algorithm="HS256")

    def floor() -> None:
        verify()
        query()
        sign()

    from functions.livekit_token.app import handler

    event = _function_url_event(token, room)
    first = handler(event, None)
    assert first["statusCode"] == 200, first

    def request() -> dict:
        return handler(event, None)

    floor_us, request_us, ratio = _paired(floor, request, iterations, rounds)
    out = {
        "verify": statistics.median(_per_call_us(verify, iterations) for _ in range(5)),
        "sql": statistics.median(_per_call_us(query, iterations) for _ in range(5)),
        "sign": statistics.median(_per_call_us(sign, iterations) for _ in range(5)),
        "floor": floor_us,
        "request": request_us,
        "ratio": ratio,
    }
    conn.close()
    return out


# -- report -----------------------------------------------------------------------------------

def _verdict(ratio: float, target: float) -> str:
    return "meets" if ratio <= target else "MISSES"


def report(c: dict[str, float], w: dict[str, float]) -> str:
    cold_ratio, honest_ratio, warm_ratio = c["ratio"], c["ratio+psycopg"], w["ratio"]
    return "\n".join([
        "## livekit-token",
        "",
        f"Python {sys.version.split()[0]}, {os.cpu_count()} CPU(s). Times are medians; ratios are medians of "
        "side-by-side runs.",
        "",
        "| measure | livekit-token | floor | ratio | target |",
        "|---|---:|---:|---:|---|",
        f"| cold: import (ms) | {c['app']:.1f} | {c['floor']:.1f} | {cold_ratio:.2f}x | "
        f"<= {TARGET_COLD}x ({_verdict(cold_ratio, TARGET_COLD)}) |",
        f"| cold: import + psycopg (ms) | {c['app+psycopg']:.1f} | {c['floor']:.1f} | {honest_ratio:.2f}x | "
        "(informational) |",
        f"| warm: request via `handler` (µs) | {w['request']:.0f} | {w['floor']:.0f} | {warm_ratio:.2f}x | "
        f"<= {TARGET_WARM}x ({_verdict(warm_ratio, TARGET_WARM)}) |",
        "",
        f"Bare interpreter start: {c['bare']:.1f} ms. Warm floor = verify {w['verify']:.0f} µs + "
        f"SQL round trip {w['sql']:.0f} µs + sign {w['sign']:.0f} µs.",
        "",
    ])


def main() -> str:
    from nexus.migrate import prepare_local
    from nexus.pg import EmbeddedPostgres

    root = Path(tempfile.mkdtemp(prefix="nexus-bench-pg-"))
    server = EmbeddedPostgres(root / "data", fast=True)
    server.start()
    try:
        url = server.create_database("nexus_bench")
        prepare_local(url, log=lambda *_: None)
        c = cold(lambda_env(url))
        w = warm(url)
    finally:
        server.destroy()
        try:
            root.rmdir()
        except OSError:
            pass
    return report(c, w)


if __name__ == "__main__":
    print(main())
