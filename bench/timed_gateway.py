"""The local gateway (nexus/gateway.py) with two timings in every answer, for bench_livekit's join breakdown.

`x-bench-function-us`: the function itself (call_asgi into its app: body model, token check, SQL,
signing; what a Lambda invocation runs). `x-bench-gateway-us`: from the gateway's ASGI call to the
response start (reading the body, the thread hop, the function). Whatever the client measures
beyond that is uvicorn's HTTP handling, loopback TCP and the client's own HTTP library.

    uvicorn --factory bench.timed_gateway:TimedGateway
"""

from __future__ import annotations

import time
from typing import Any, Callable

import nexus.gateway as gateway
from shared.http import call_asgi


def _timed_call_asgi(app: Callable, *args: Any) -> tuple[int, dict[str, str], bytes]:
    started = time.perf_counter()
    status, headers, body = call_asgi(app, *args)
    took = int((time.perf_counter() - started) * 1e6)
    return status, {**headers, "x-bench-function-us": str(took)}, body


gateway.call_asgi = _timed_call_asgi  # the gateway module's own reference: only this process is affected


class TimedGateway(gateway.Gateway):
    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        arrived = time.perf_counter()

        async def timed_send(message: dict) -> None:
            if message["type"] == "http.response.start":
                took = int((time.perf_counter() - arrived) * 1e6)
                message = {**message, "headers": [*message.get("headers", []),
                                                  (b"x-bench-gateway-us", str(took).encode())]}
            await send(message)

        await super().__call__(scope, receive, timed_send)
