"""What a brigged member's old token still buys, per mode, and what strict mode costs a join.

Against the real livekit-server with real WebRTC clients, in a loopback-only network namespace
(nexus/netns.py); PostgreSQL and the functions (gateway in a thread) in this process, the
server's webhooks to the real livekit-webhook.

- Old-token reconnects: per round a new scout talks on a net where a voyager listens, is
  brigged through member-admin, then reconnects once with each token they held and publishes
  at once: the token livekit-token minted, the last token LiveKit refreshed to their client,
  and (strict mode) the first one it refreshed, from when the join check granted the microphone.
  Per attempt: audio frames (10 ms each) the listener received from them and the span from the
  first to the last, until the server removed them. p50 / p99 / max per mode and token.
- Join path: POST livekit-token and connect until the microphone may be used, in strict mode
  (until the server's permission change arrives, granted by the webhook's join check) against
  the same connect with a token minted in process by livekit-api (bare LiveKit, publish in the
  token). Interleaved, a new room each time; medians and their ratio.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROUNDS = int(os.environ.get("NEXUS_BENCH_BRIG_ROUNDS", 6))
JOIN_ROUNDS = int(os.environ.get("NEXUS_BENCH_JOIN_ROUNDS", 15))
# A guard against hanging only (a slow machine is never a failure of the benchmark).
GUARD = 300.0


def run() -> dict[str, Any]:
    """Outside the namespace: make sure the server is built, then measure inside one."""
    from bench.common import in_namespace

    data = in_namespace("bench.bench_brig", timeout=3600)
    return {"markdown": report(data), "data": data}


def _percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    if len(ordered) == 1:
        return {"p50": ordered[0], "p99": ordered[0], "max": ordered[0], "n": 1}
    q = statistics.quantiles(ordered, n=100, method="inclusive")
    return {"p50": statistics.median(ordered), "p99": q[98], "max": ordered[-1], "n": len(ordered)}


class Heard:
    """What a listener receives, per publisher identity: loud 10 ms frames and when."""

    def __init__(self, room: Any):
        self.frames: dict[str, list[float]] = {}
        self._tasks: list[asyncio.Task] = []
        room.on("track_subscribed", self._on_track)

    def _on_track(self, track: Any, publication: Any, participant: Any) -> None:
        self._tasks.append(asyncio.ensure_future(self._count(track, participant.identity)))

    async def _count(self, track: Any, identity: str) -> None:
        from livekit import rtc

        stream = rtc.AudioStream(track, sample_rate=48000, num_channels=1)
        try:
            async for event in stream:
                data = event.frame.data
                samples = data if isinstance(data, memoryview) else memoryview(data).cast("h")
                values = list(samples)
                if values and math.sqrt(sum(v * v for v in values) / len(values)) > 100:
                    self.frames.setdefault(identity, []).append(time.perf_counter())
        except Exception:
            pass
        finally:
            await stream.aclose()

    def since(self, identity: str, mark: int) -> tuple[int, float]:
        got = self.frames.get(identity, [])[mark:]
        return len(got), ((got[-1] - got[0]) * 1000 + 10 if got else 0.0)

    def mark(self, identity: str) -> int:
        return len(self.frames.get(identity, []))


async def _quiet(heard: Heard, identity: str, still: float = 0.5) -> None:
    """Until nothing new has arrived from `identity` for `still` seconds (at most GUARD)."""
    deadline = time.monotonic() + GUARD
    last, since = heard.mark(identity), time.monotonic()
    while time.monotonic() - since < still and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        if heard.mark(identity) != last:
            last, since = heard.mark(identity), time.monotonic()


def measure() -> dict[str, Any]:
    """Inside the namespace."""
    import logging

    import psycopg

    from bench.common import livekit_stack, postgres

    logging.getLogger("livekit").setLevel(logging.CRITICAL)
    with postgres() as url, livekit_stack(url) as server, psycopg.connect(url, autocommit=True) as conn:
        return asyncio.run(_scenario(conn, server))


def _strict(on: bool) -> None:
    from shared import config

    os.environ["LIVEKIT_PUBLISH_AFTER_JOIN_CHECK"] = "true" if on else "false"
    config.get_settings.cache_clear()


async def _scenario(conn: Any, server: Any) -> dict[str, Any]:
    from livekit import api, rtc

    from bench.common import LIVEKIT_KEY, LIVEKIT_SECRET, access_token, new_member
    from functions.livekit_token.app import app as token_app
    from functions.member_admin.app import app as admin_app
    from shared.http import call_asgi
    from tests.livekit_server.clients import Refused, connect

    def post(app: Any, token: str, body: dict) -> dict:
        headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
        status, _, out = call_asgi(app, "POST", "/", headers, json.dumps(body).encode())
        assert status == 200, (status, out)
        return json.loads(out)

    def net() -> str:
        code = f"bench-brig-{uuid.uuid4().hex[:10]}"
        conn.execute("INSERT INTO public.voice_nets (code, label, min_rank_to_tx) VALUES (%s, %s, 'scout')",
                     (code, code))
        return code

    async def until(check, what: str) -> None:
        deadline = time.monotonic() + GUARD
        while not check():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not happen within {GUARD:.0f} s")
            await asyncio.sleep(0.01)

    def may_publish(participant: Any) -> bool:
        permissions = getattr(participant.room.local_participant, "permissions", None)
        return permissions is not None and bool(getattr(permissions, "can_publish", False))

    founder = new_member(conn, "founder")
    founder_token = access_token(founder)
    reconnects: dict[str, dict[str, list[float]]] = {}

    for mode in ("default", "strict"):
        _strict(mode == "strict")
        room_name = net()
        listener_id = new_member(conn, "voyager")
        listener_token = (await asyncio.to_thread(post, token_app, access_token(listener_id),
                                                  {"roomName": room_name}))["token"]
        listener = await connect(server.url, listener_token)
        heard = Heard(listener.room)
        try:
            for _ in range(ROUNDS):
                scout = new_member(conn, "scout")
                minted = (await asyncio.to_thread(post, token_app, access_token(scout), {"roomName": room_name}))["token"]
                s = await connect(server.url, minted)
                refreshed: list[str] = []
                s.room.on("token_refreshed", lambda room=s.room: refreshed.append(room._token))
                if mode == "strict":
                    await until(lambda: may_publish(s), "the publish permission")
                await s.publish_microphone()
                await until(lambda: heard.mark(scout) > 5, "the listener hearing the scout")
                await asyncio.to_thread(post, admin_app, founder_token,
                                        {"userId": scout, "addRoles": ["brig"], "reason": "bench"})
                await asyncio.wait_for(s.disconnected.wait(), GUARD)
                await _quiet(heard, scout)  # the talk from before the brig has all arrived
                held = {"minted": minted, "refreshed (latest)": s.room._token}
                if mode == "strict" and refreshed:
                    held["refreshed (at the grant)"] = refreshed[0]
                await s.leave()
                for kind, token in held.items():
                    mark = heard.mark(scout)
                    try:
                        again = await connect(server.url, token)
                        try:  # a publish the server never answers (no right, or removed meanwhile)
                            await asyncio.wait_for(again.publish_microphone(), 2)
                        except (Refused, asyncio.TimeoutError):
                            pass
                        await asyncio.wait_for(again.disconnected.wait(), GUARD)
                        await again.leave()
                    except Refused:
                        pass
                    await _quiet(heard, scout)  # anything forwarded late arrives
                    frames, span = heard.since(scout, mark)
                    got = reconnects.setdefault(f"{mode}: {kind}", {"frames": [], "ms": []})
                    got["frames"].append(frames)
                    got["ms"].append(span)
        finally:
            await listener.leave()

    # Join path: strict mode until the microphone may be used, against bare LiveKit.
    _strict(True)
    member = new_member(conn, "scout")
    member_token = access_token(member)

    async def strict_join() -> float:
        room_name = net()
        started = time.perf_counter()
        token = (await asyncio.to_thread(post, token_app, member_token, {"roomName": room_name}))["token"]
        p = await connect(server.url, token)
        await until(lambda: may_publish(p), "the publish permission")
        done = time.perf_counter()
        await p.leave()
        return done - started

    async def bare_join() -> float:
        room_name = net()
        started = time.perf_counter()
        token = (api.AccessToken(LIVEKIT_KEY, LIVEKIT_SECRET).with_identity(member)
                 .with_grants(api.VideoGrants(room_join=True, room=room_name, can_publish=True,
                                              can_subscribe=True, can_publish_data=True)).to_jwt())
        p = await connect(server.url, token)
        done = time.perf_counter()
        await p.leave()
        return done - started

    await strict_join()
    await bare_join()  # warm-up
    xs, ys = [], []
    for i in range(JOIN_ROUNDS):
        pair = [(bare_join, xs), (strict_join, ys)] if i % 2 == 0 else [(strict_join, ys), (bare_join, xs)]
        for fn, out in pair:
            out.append(await fn())
    _ = rtc
    return {"reconnects": {k: {"frames": _percentiles(v["frames"]), "ms": _percentiles(v["ms"])}
                           for k, v in reconnects.items()},
            "join": {"strict_ms": statistics.median(ys) * 1000, "bare_ms": statistics.median(xs) * 1000,
                     "ratio": statistics.median(ys) / statistics.median(xs), "rounds": JOIN_ROUNDS}}


def report(data: dict[str, Any]) -> str:
    rows = []
    for kind, r in data["reconnects"].items():
        f, m = r["frames"], r["ms"]
        rows.append(f"| {kind} | {f['n']} | {f['p50']:.0f} / {f['p99']:.0f} / {f['max']:.0f} | "
                    f"{m['p50']:.0f} / {m['p99']:.0f} / {m['max']:.0f} |")
    j = data["join"]
    return "\n".join([
        "## A brigged member's old tokens, and strict mode's join (real livekit-server)",
        "",
        "Per round a new scout talks on a net where a voyager listens, is brigged through member-admin, then "
        "reconnects once with each token they held and publishes at once; what the listener receives from "
        "them until the server removes them (audio frames of 10 ms; span from first to last frame). Strict "
        "mode is `LIVEKIT_PUBLISH_AFTER_JOIN_CHECK=true` (docs/livekit-access.md).",
        "",
        "| mode: token | attempts | frames p50 / p99 / max | ms p50 / p99 / max |",
        "|---|---:|---:|---:|",
        *rows,
        "",
        f"Join path until the microphone may be used, median of {j['rounds']}: strict mode (livekit-token, "
        f"connect, the join check's grant arriving) {j['strict_ms']:.0f} ms against bare LiveKit (token with "
        f"publish minted in process, connect) {j['bare_ms']:.0f} ms: {j['ratio']:.2f}x.",
        "",
    ])


if __name__ == "__main__":  # inside the namespace: python -m bench.bench_brig OUT.json
    Path(sys.argv[1]).write_text(json.dumps(measure()))
