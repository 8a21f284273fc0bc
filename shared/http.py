"""A minimal JSON-over-HTTP ASGI layer shared by every function.

Deliberately tiny (no web framework on the import path): routes by method,
answers OPTIONS preflight, enforces body size and content type, parses JSON,
and turns every failure into the shared error envelope. Handlers are plain
synchronous functions `handler(request) -> Response`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from pydantic import BaseModel, ValidationError

from shared.config import ConfigError
from shared.errors import ApiError, bad_request
from shared.text_rules import STORABLE
from shared import observability

log = logging.getLogger("nexus.http")


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: bytes
    query: str = ""
    # Filled in by auth so logs can name the caller (never the token).
    user_id: str | None = None
    # Lambda's aws_request_id when there is one, so our lines match Lambda's own.
    _request_id: str | None = field(default=None, repr=False)

    @property
    def request_id(self) -> str:
        """Lambda's request id, or a random one made only if something logs."""
        if self._request_id is None:
            self._request_id = os.urandom(16).hex()
        return self._request_id

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def json(self, max_bytes: int) -> Any:
        """The body as JSON: size limit, content type and syntax checked."""
        if len(self.body) > max_bytes:
            raise ApiError("PAYLOAD_TOO_LARGE", f"The request body exceeds {max_bytes} bytes.")
        ctype = (self.header("content-type") or "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise ApiError("UNSUPPORTED_MEDIA_TYPE", "Send the body as application/json.")
        if not self.body.strip():
            raise bad_request("The request body is empty; a JSON object is required.")
        try:
            data, _ = decode_json(self.body)
        except BodyNotJson as e:
            raise bad_request(str(e)) from None
        return data

    def model(self, model: type[BaseModel], max_bytes: int) -> Any:
        """Parse the body into a pydantic model, with field-level details on failure."""
        data = self.json(max_bytes)
        if not isinstance(data, dict):
            raise bad_request("The request body must be a JSON object.")
        try:
            return model.model_validate(data)
        except ValidationError as e:
            raise bad_request("The request body is invalid.", {"fields": field_errors(e)}) from None


class BodyNotJson(ValueError):
    """The body is not JSON we accept; the message is safe to show the caller."""


def decode_json(body: bytes) -> tuple[Any, str]:
    """(value, text) of a UTF-8 JSON body that Postgres can store.

    UTF-8 only (RFC 8259 §8.1): json.loads on bytes would also guess UTF-16
    and UTF-32, whose escapes the NUL check below cannot see. NaN/Infinity,
    NUL and unpaired surrogates are refused because jsonb and text refuse them.
    """
    try:
        text = body.decode("utf-8")
        data = json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise BodyNotJson("The body is nested too deeply.") from None
    except ValueError:  # includes UnicodeDecodeError
        raise BodyNotJson("The body is not valid UTF-8 JSON.") from None
    # Only \u escapes can smuggle in NUL or unpaired surrogates; skip the walk otherwise.
    if "\\u" in text and not _storable(data):
        raise BodyNotJson("The body contains a NUL character or an unpaired surrogate.")
    return data, text


def _reject_constant(name: str) -> Any:
    # NaN and Infinity are not JSON (RFC 8259), and jsonb refuses them.
    raise ValueError(name)


def _storable(data: Any) -> bool:
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if not STORABLE.holds(item):  # the rule openapi.json states for every string and key
                return False
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return True


def field_errors(e: ValidationError) -> dict[str, str]:
    out: dict[str, str] = {}
    for err in e.errors(include_url=False, include_input=False):
        loc = ".".join(str(p) for p in err["loc"]) or "body"
        out.setdefault(loc, err["msg"])
    return out


@dataclass
class Response:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[Request], Response]


def iso_utc(epoch: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))

_BASE_HEADERS = [(b"content-type", b"application/json"), (b"cache-control", b"no-store")]


class JsonApp:
    """ASGI app for one function: {method: handler}."""

    def __init__(
        self,
        name: str,
        routes: dict[str, Handler],
        *,
        cors_origins: Callable[[], str | None] = lambda: None,
    ):
        self.name = name
        self.routes = {m.upper(): h for m, h in routes.items()}
        self._cors_origins = cors_origins

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "lifespan":
            await serve_lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        body = await _read_body(receive)
        status, headers, payload = self.respond(scope, body)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    def respond(self, scope: dict, body: bytes) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """One ASGI request, synchronously: (status, headers, payload)."""
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        request = Request(
            method=scope["method"].upper(),
            path=scope.get("path", "/"),
            headers=headers,
            body=body,
            query=(scope.get("query_string") or b"").decode("latin-1"),
            # mangum passes Lambda's context along (events other than Function URLs)
            _request_id=getattr(scope.get("aws.context"), "aws_request_id", None),
        )
        return self.respond_to(request)

    def respond_to(self, request: Request) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """Also the Lambda adapter's entry: handlers are synchronous, so it needs no event loop."""
        return _encode(self.dispatch(request), self._cors_headers(request))

    def dispatch(self, request: Request) -> Response:
        started = time.perf_counter()
        observability.start_request()
        try:
            if request.method == "OPTIONS":
                response = Response(204, None, {"Allow": ", ".join(sorted({*self.routes, "OPTIONS"}))})
            else:
                handler = self.routes.get(request.method)
                if handler is None:
                    raise ApiError(
                        "METHOD_NOT_ALLOWED",
                        f"{request.method} is not supported here.",
                        headers={"Allow": ", ".join(sorted({*self.routes, "OPTIONS"}))},
                    )
                response = handler(request)
        except ApiError as e:
            response = Response(e.status, e.body(), e.headers)
        except ConfigError as e:
            # Names of missing settings go to the log only, never to callers.
            log.error("configuration error: %s", e, extra={"function": self.name, "request_id": request.request_id})
            response = Response(500, {"error": "INTERNAL", "message": "The service is not configured correctly."})
        except Exception:
            # Never leak internals; the log carries the stack trace.
            log.exception("unhandled error", extra={"function": self.name, "request_id": request.request_id})
            response = Response(500, {"error": "INTERNAL", "message": "Something went wrong on our side."})
        if response.status >= 500:
            observability.count("ServerErrors", function=self.name)  # alarmed on in template.yaml
        _log_request(self.name, request, response, started)
        return response

    def _cors_headers(self, request: Request) -> list[tuple[bytes, bytes]]:
        origin = request.header("origin")
        if not origin:
            return []
        try:
            allowed = self._cors_origins()
        except ConfigError:  # already answered (and logged) as a 500 by dispatch
            return []
        except ApiError:  # the secret store did not answer (a 503): CORS_ALLOW_ORIGINS is no secret
            allowed = os.environ.get("CORS_ALLOW_ORIGINS")
        if not allowed or not origin:
            return []
        origins = {o.strip() for o in allowed.split(",")}
        if "*" not in origins and origin not in origins:
            return []
        return [
            (b"access-control-allow-origin", origin.encode("latin-1")),
            (b"vary", b"Origin"),
            (b"access-control-allow-methods", b"GET, POST, DELETE, OPTIONS"),
            (b"access-control-allow-headers", b"authorization, content-type, x-client-info, apikey"),
            # as the Function URLs' ExposeHeaders (template.yaml): page scripts may read Retry-After
            (b"access-control-expose-headers", b"retry-after"),
            (b"access-control-max-age", b"600"),
        ]


def _log_request(function: str, request: Request, response: Response, started: float) -> None:
    """One line per request (with the request's metrics, in Lambda); never a header or a body."""
    fields = None
    if log.isEnabledFor(logging.INFO):
        outcome = response.body.get("error") if isinstance(response.body, dict) and response.status >= 400 else "ok"
        fields = {
            "function": function,
            "request_id": request.request_id,
            "method": request.method,
            "status": response.status,
            "outcome": outcome,
            "user_id": request.user_id,
            "duration_ms": round((time.perf_counter() - started) * 1000, 2),
        }
    observability.end_request(log, "request", fields)


async def _read_body(receive: Callable) -> bytes:
    chunks = []
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(chunks)


# One encoder: json.dumps with non-default options builds a new one per call.
_compact_json = json.JSONEncoder(separators=(",", ":")).encode


def _encode(response: Response, extra: list[tuple[bytes, bytes]]) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    payload = b"" if response.body is None else _compact_json(response.body).encode()
    headers = list(_BASE_HEADERS) if payload else [(b"cache-control", b"no-store")]
    headers += [(k.lower().encode("latin-1"), str(v).encode("latin-1")) for k, v in response.headers.items()]
    headers += extra
    return response.status, headers, payload


async def serve_lifespan(receive: Callable, send: Callable) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def call_asgi(
    app: Callable,
    method: str,
    path: str = "/",
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    query: str = "",
) -> tuple[int, dict[str, str], bytes]:
    """Run one request through an ASGI app on a fresh event loop.

    Safe to call from many threads at once (each gets its own loop), which the
    local gateway and the concurrency tests rely on.
    """
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()],
        "client": ("127.0.0.1", 0),
        "server": ("127.0.0.1", 80),
        "scheme": "http",
    }
    sent_body = False
    out: dict[str, Any] = {"status": 500, "headers": {}, "body": b""}

    async def receive() -> dict:
        nonlocal sent_body
        if not sent_body:
            sent_body = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        if message["type"] == "http.response.start":
            out["status"] = message["status"]
            for k, v in message.get("headers", []):
                out["headers"][k.decode("latin-1")] = v.decode("latin-1")
        elif message["type"] == "http.response.body":
            out["body"] += message.get("body", b"")

    asyncio.run(app(scope, receive, send))
    return out["status"], out["headers"], out["body"]
