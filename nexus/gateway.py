"""The local gateway: every function at /functions/v1/<name>, and Supabase's auth server
(when it runs) at /auth/v1/..., like Supabase. It serves no /rest/v1 (PostgREST).

Each request runs the function's own ASGI app in a worker thread (one event
loop per request, as in Lambda), so slow database work in one request does
not hold up another.
"""

from __future__ import annotations

import asyncio
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from nexus import registry
from shared.http import call_asgi, serve_lifespan

log = logging.getLogger("nexus.gateway")
PREFIX = "/functions/v1/"
AUTH_PREFIX = "/auth/v1"
# Hop-by-hop headers (RFC 9110 7.6.1) and those the proxy sets itself.
_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade",
        "host", "content-length"}


class Gateway:
    def __init__(self, functions: dict[str, str] | None = None, *, auth_upstream: str | None = None):
        # auth_upstream: the auth server's own address (http://127.0.0.1:port); /auth/v1/X goes to its /X.
        self.auth_upstream = auth_upstream
        # The auth proxy's own threads: the functions fetch the auth server's JWKS through this
        # gateway, so on the shared default pool a burst of calls waiting for those keys would
        # hold every thread the fetch itself needs (each call then 503 until it timed out).
        self._auth_pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="auth-proxy") if auth_upstream else None
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
        if self.auth_upstream and (path == AUTH_PREFIX or path.startswith(AUTH_PREFIX + "/")):
            body = await _read_body(receive)
            if body is None:
                return
            status, headers, payload = await asyncio.get_running_loop().run_in_executor(
                self._auth_pool, _forward, self.auth_upstream, scope["method"], _upstream_path(scope),
                scope.get("query_string", b"").decode("latin-1"), scope.get("headers", []), body)
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": payload})
            return
        name = path[len(PREFIX):].strip("/") if path.startswith(PREFIX) else ""
        app = self.apps.get(name)
        if app is None:
            await _json(send, 404, {"error": "NOT_FOUND", "message": f"No function at {path}.",
                                    "details": {"functions": sorted(self.apps)}})
            return
        body = await _read_body(receive)
        if body is None:
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])}
        status, out_headers, out_body = await asyncio.to_thread(
            call_asgi, app, scope["method"], "/", headers, body, scope.get("query_string", b"").decode("latin-1")
        )
        await send({"type": "http.response.start", "status": status,
                    "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in out_headers.items()]})
        await send({"type": "http.response.body", "body": out_body})


async def _read_body(receive: Callable) -> bytes | None:
    """The whole request body; None when the client went away."""
    body = b""
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        body += message.get("body", b"")
        more = message.get("more_body", False)
    return body


def _upstream_path(scope: dict) -> str:
    """The path after /auth/v1 as the client encoded it: decoding it first would turn %3F into
    the start of a query and %20 or %0D%0A into bytes no request line may carry."""
    from urllib.parse import quote

    raw = scope.get("raw_path")
    path = raw.decode("latin-1") if raw else quote(scope["path"], safe="/:@!$&'()*+,;=-._~")
    return path[len(AUTH_PREFIX):] or "/"


def _forward(upstream: str, method: str, path: str, query: str, headers: list[tuple[bytes, bytes]],
             body: bytes) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """One request to the auth server, its answer as it gave it (502 when it does not answer)."""
    import http.client
    from urllib.parse import urlsplit

    target = urlsplit(upstream)
    conn = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
    try:
        try:
            conn.putrequest(method, path + (f"?{query}" if query else ""), skip_accept_encoding=True)
        except http.client.InvalidURL:  # raw bytes a request line may not carry
            payload = json.dumps({"error": "BAD_REQUEST", "message": "The request path is invalid."}).encode()
            return 400, [(b"content-type", b"application/json"),
                         (b"content-length", str(len(payload)).encode())], payload
        for k, v in headers:
            if k.decode("latin-1").lower() not in _HOP:
                conn.putheader(k.decode("latin-1"), v.decode("latin-1"))
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        resp = conn.getresponse()
        payload = resp.read()
        out = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in resp.getheaders()
               if k.lower() not in _HOP]
        out.append((b"content-length", str(len(payload)).encode()))
        return resp.status, out, payload
    except OSError as e:
        log.warning("auth server unreachable: %s", e)
        payload = json.dumps({"error": "UNAVAILABLE", "message": "The local auth server does not answer."}).encode()
        return 502, [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())], payload
    finally:
        conn.close()


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
