"""The local gateway: every function at /functions/v1/<name>, like Supabase.

Each request runs the function's own ASGI app in a worker thread (one event
loop per request, as in Lambda), so slow database work in one request does
not hold up another.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Callable

from nexus import registry
from shared.http import call_asgi, serve_lifespan

log = logging.getLogger("nexus.gateway")
PREFIX = "/functions/v1/"


class Gateway:
    def __init__(self, functions: dict[str, str] | None = None):
        self.apps: dict[str, Callable] = {}
        self.missing: dict[str, str] = {}
        for name, path in (functions or registry.HTTP_FUNCTIONS).items():
            try:
                self.apps[name] = registry.load(path)
            except (ImportError, AttributeError) as e:
                self.missing[name] = f"{type(e).__name__}: {e}"

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "lifespan":
            await serve_lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        if path == "/openapi.json" and scope["method"] == "GET":
            await _openapi(send)
            return
        name = path[len(PREFIX):].strip("/") if path.startswith(PREFIX) else ""
        app = self.apps.get(name)
        if app is None:
            await _json(send, 404, {"error": "NOT_FOUND", "message": f"No function at {path}.",
                                    "details": {"functions": sorted(self.apps)}})
            return
        body = b""
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])}
        status, out_headers, out_body = await asyncio.to_thread(
            call_asgi, app, scope["method"], "/", headers, body, scope.get("query_string", b"").decode("latin-1")
        )
        await send({"type": "http.response.start", "status": status,
                    "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in out_headers.items()]})
        await send({"type": "http.response.body", "body": out_body})


_openapi_text: bytes | None = None


async def _openapi(send: Callable) -> None:
    """The document the running code generates (equal to the shipped openapi.json; a test holds them equal)."""
    global _openapi_text
    if _openapi_text is None:
        from nexus.openapi import render

        _openapi_text = render().encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"access-control-allow-origin", b"*")]})
    await send({"type": "http.response.body", "body": _openapi_text})


async def _json(send: Callable, status: int, body: Any) -> None:
    payload = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": payload})
