"""Real LiveKit: the join path through livekit-token, and webhook to `voice_presence` row.

Runs inside a loopback-only network namespace (nexus/netns.py): outside one, `run()` builds
the pinned livekit-server if needed and re-runs itself under `unshare --net`. In there:
an embedded PostgreSQL, the local gateway (every function) in a process of its own on a free
port (in the client's process it would compete with the client for the GIL and add ~40 ms to
every join), livekit-server with its webhooks to that gateway's livekit-webhook, and the
`livekit` client.

- Join path: POST livekit-token (HTTP to the gateway) then `Room.connect` until the client is
  connected, against the same connect with a token minted directly by livekit-api's
  AccessToken; interleaved, order alternating, a new room each time. Ratio of medians.
- Webhook to row: from `Room.connect` returning (the participant is active, which is when the
  server sends `participant_joined`) to the member's open `voice_presence` row being visible
  (0 when it already is), polled every 2 ms; p50 and p99 over the joins.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

from bench.common import LIVEKIT_KEY, LIVEKIT_SECRET, access_token, lambda_env, new_member, postgres

JOIN_ROUNDS = int(os.environ.get("NEXUS_BENCH_JOIN_ROUNDS", 15))
WEBHOOK_JOINS = int(os.environ.get("NEXUS_BENCH_WEBHOOK_JOINS", 60))
TARGET_JOIN_RATIO = 1.10
TARGET_ROW_P99_MS = 250.0


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


async def _measure(base: str, url: str, conn, member_token: str, member_id: str) -> dict:
    import httpx
    from livekit import api, rtc

    async def connect(token: str) -> tuple[rtc.Room, float]:
        room = rtc.Room()
        await room.connect(url, token)
        return room, time.perf_counter()

    # One HTTP client for the run, as a frontend keeps its connection (creating one costs an SSL context).
    http = httpx.AsyncClient()

    # Where each join's time goes (seconds): token (the POST as the client sees it, or the in-process
    # mint), function and gateway (from the timed gateway's headers), connect.
    parts: dict[str, list[float]] = {"post": [], "function": [], "gateway": [], "ours_connect": [],
                                     "mint": [], "direct_connect": []}

    async def ours(room_name: str) -> float:
        started = time.perf_counter()
        reply = await http.post(f"{base}/livekit-token", json={"roomName": room_name},
                                headers={"authorization": f"Bearer {member_token}"})
        reply.raise_for_status()
        answered = time.perf_counter()
        room, done = await connect(reply.json()["token"])
        await room.disconnect()
        parts["post"].append(answered - started)
        parts["function"].append(int(reply.headers["x-bench-function-us"]) / 1e6)
        parts["gateway"].append(int(reply.headers["x-bench-gateway-us"]) / 1e6)
        parts["ours_connect"].append(done - answered)
        return done - started

    async def direct(room_name: str) -> float:
        started = time.perf_counter()
        token = (api.AccessToken(LIVEKIT_KEY, LIVEKIT_SECRET).with_identity(member_id)
                 .with_grants(api.VideoGrants(room_join=True, room=room_name, can_publish=True,
                                              can_subscribe=True, can_publish_data=True)).to_jwt())
        minted = time.perf_counter()
        room, done = await connect(token)
        await room.disconnect()
        parts["mint"].append(minted - started)
        parts["direct_connect"].append(done - minted)
        return done - started

    def net() -> str:
        code = f"bench-{uuid.uuid4().hex[:10]}"
        conn.execute("INSERT INTO public.voice_nets (code, label) VALUES (%s, %s)", (code, code))
        return code

    await ours(net())
    await direct(net())  # warm-up
    for values in parts.values():
        values.clear()
    xs, ys = [], []
    for i in range(JOIN_ROUNDS):
        pair = [(direct, xs), (ours, ys)] if i % 2 == 0 else [(ours, ys), (direct, xs)]
        for fn, out in pair:
            out.append(await fn(net()))

    # Webhook to row.
    lags = []
    for _ in range(WEBHOOK_JOINS):
        room_name = net()
        reply = await http.post(f"{base}/livekit-token", json={"roomName": room_name},
                                headers={"authorization": f"Bearer {member_token}"})
        room, active = await connect(reply.json()["token"])
        while not conn.execute("SELECT 1 FROM public.voice_presence WHERE user_id = %s AND room_name = %s "
                               "AND left_at IS NULL", (member_id, room_name)).fetchone():
            await asyncio.sleep(0.002)
            if time.perf_counter() - active > 120:  # a guard against hanging only
                raise RuntimeError("no voice_presence row 120 s after the join")
        lags.append(max(0.0, time.perf_counter() - active) * 1000)
        await room.disconnect()
    await http.aclose()
    return {"join": {"direct_ms": statistics.median(xs) * 1000, "ours_ms": statistics.median(ys) * 1000,
                     "ratio": statistics.median(ys) / statistics.median(xs), "rounds": JOIN_ROUNDS,
                     "parts_ms": {k: statistics.median(v) * 1000 for k, v in parts.items()},
                     "parts_mean_ms": {k: statistics.fmean(v) * 1000 for k, v in parts.items()},
                     "mean_difference_ms": (statistics.fmean(ys) - statistics.fmean(xs)) * 1000},
            "row": {"p50_ms": _percentile(lags, 0.5), "p99_ms": _percentile(lags, 0.99), "n": len(lags)}}


def _gateway(port: int, env: dict[str, str]) -> subprocess.Popen:
    """The local gateway (every function) in a process of its own, as the functions run apart
    from the clients in production; returns once it answers."""
    import urllib.error
    import urllib.request

    # (the gateway with timing headers: bench/timed_gateway.py; otherwise nexus.gateway:Gateway itself)
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "--factory", "bench.timed_gateway:TimedGateway", "--host",
                             "127.0.0.1", "--port", str(port), "--lifespan", "off", "--log-level", "warning"],
                            env=env, cwd=Path(__file__).resolve().parents[1], stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 300  # a guard against hanging only
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/functions/v1/none", timeout=5)
        except urllib.error.HTTPError:
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the gateway did not start")


def _inside() -> dict:
    import logging

    import psycopg

    logging.getLogger("livekit").setLevel(logging.CRITICAL)  # the SDK's notes on closed data channels
    from nexus.livekit_server import LiveKitServer, ensure_binary, free_port

    with postgres() as db_url:
        port = free_port()
        server = LiveKitServer(LIVEKIT_KEY, LIVEKIT_SECRET, binary=ensure_binary(build=False),
                               webhook_urls=[f"http://127.0.0.1:{port}/functions/v1/livekit-webhook"], log_level="warn")
        server.start()
        gateway = _gateway(port, lambda_env(db_url, LIVEKIT_URL=server.url))
        try:
            with psycopg.connect(db_url, autocommit=True) as conn:
                member = new_member(conn, "scout")
                return asyncio.run(_measure(f"http://127.0.0.1:{port}/functions/v1", server.url, conn,
                                            access_token(member), member))
        finally:
            gateway.terminate()
            gateway.wait(timeout=60)
            server.stop()


def breakdown(j: dict) -> dict[str, float]:
    """Where the join path's difference from bare LiveKit goes, and the ratio the function alone would
    give: the floor's connect plus the function's own time, as a deployed client reaching the Lambda
    directly (no local gateway) would see it, network to AWS aside.

    The parts are means over the same joins, so they add up to the mean difference exactly (each
    join's POST is function + gateway + HTTP); the ratio uses medians, as the join ratio does."""
    m, p = j["parts_mean_ms"], j["parts_ms"]
    out = {
        "difference": j["mean_difference_ms"],
        "function": m["function"],
        "gateway": m["gateway"] - m["function"],          # body read, thread hop, response: nexus/gateway.py
        "http": m["post"] - m["gateway"],                 # uvicorn, loopback TCP, the client's httpx
        "mint": m["mint"],                                # what the floor spends instead (in process)
        "connect": m["ours_connect"] - m["direct_connect"],  # the same connect, ours minus the floor's
    }
    out["function_ratio"] = (j["direct_ms"] - p["mint"] + p["function"]) / j["direct_ms"]
    return out


def report(fig: dict) -> str:
    j, r = fig["join"], fig["row"]
    join_ok = "meets" if j["ratio"] <= TARGET_JOIN_RATIO else "MISSES"
    row_ok = "meets" if r["p99_ms"] < TARGET_ROW_P99_MS else "MISSES"
    b = breakdown(j)
    fn_ok = "meets" if b["function_ratio"] <= TARGET_JOIN_RATIO else "MISSES"
    return "\n".join([
        "## Real LiveKit: join path and webhook to row",
        "",
        "livekit-server (the pinned build) with the `livekit` WebRTC client, the local gateway and an embedded "
        "PostgreSQL, all in a loopback-only network namespace. Join path: POST livekit-token over HTTP, then "
        "connect until the client is connected, against the same connect with a token minted directly by "
        f"livekit-api ({j['rounds']} of each, interleaved, a new room each time). Webhook to row: from the "
        "connect returning (participant active: the server sends participant_joined) to the open "
        f"voice_presence row being visible, over {r['n']} joins.",
        "",
        "| measure | ours | floor | ratio | target |",
        "|---|---:|---:|---:|---|",
        f"| join path (ms, median) | {j['ours_ms']:.1f} | {j['direct_ms']:.1f} (token minted in process) | "
        f"{j['ratio']:.2f}x | <= {TARGET_JOIN_RATIO:.2f}x ({join_ok}) |",
        f"| webhook to row p50 (ms) | {r['p50_ms']:.1f} | | | |",
        f"| webhook to row p99 (ms) | {r['p99_ms']:.1f} | | | < {TARGET_ROW_P99_MS:.0f} ({row_ok}) |",
        "",
        "Where the join path's difference from bare LiveKit goes (means over the same joins, so the parts add "
        "up to the mean difference; bench/timed_gateway.py times the gateway and the function):",
        "",
        "| part | ms | |",
        "|---|---:|---|",
        f"| the function (livekit-token's app: body, token check, `livekit_token_context`, signing) | "
        f"{b['function']:.1f} | what a deployed Lambda runs |",
        f"| the local gateway (body read, thread hop, response; nexus/gateway.py) | {b['gateway']:.1f} | "
        "local only: deployed, the Function URL front replaces it |",
        f"| HTTP (uvicorn, loopback TCP, the client's httpx) | {b['http']:.1f} | the client's request |",
        f"| minus the floor's in-process mint | -{b['mint']:.1f} | |",
        f"| connect, ours minus the floor's | {b['connect']:+.1f} | the same connect: noise |",
        f"| **difference, ours minus floor (mean)** | **{b['difference']:.1f}** | |",
        "",
        f"The function's own share alone (medians): floor - mint + function = {b['function_ratio']:.2f}x the floor "
        f"(target <= {TARGET_JOIN_RATIO:.2f}x: {fn_ok}); the rest of the measured {j['ratio']:.2f}x is the local "
        "gateway and the HTTP round trip (a deployed client pays AWS's Function URL front and the network "
        "instead), and connect noise.",
        "",
    ])


def run() -> dict:
    from nexus import netns

    if netns.in_loopback_netns():
        fig = _inside()
    else:
        from nexus.livekit_server import ensure_binary

        ensure_binary()  # outside: the build needs the network
        out = Path(os.environ.get("TMPDIR", "/tmp")) / f"nexus-bench-livekit-{uuid.uuid4().hex}.json"
        code = ("import json, sys; from bench.bench_livekit import run; "
                "open(sys.argv[1], 'w').write(json.dumps(run()))")
        done = netns.run([sys.executable, "-c", code, str(out)], cwd=Path(__file__).resolve().parents[1],
                         stdout=subprocess.DEVNULL)
        if done.returncode != 0:
            raise RuntimeError(f"the namespace run failed ({done.returncode})")
        try:
            return json.loads(out.read_text())
        finally:
            out.unlink(missing_ok=True)
    return {"markdown": report(fig), "data": fig}


if __name__ == "__main__":
    print(run()["markdown"])
