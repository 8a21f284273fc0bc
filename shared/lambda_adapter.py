"""Lambda entry points: one handler per ASGI app, built at import (Lambda's init phase).

Function URL events (payload format 2.0) for a JsonApp are mapped here, in a
few lines that mirror mangum's mapping of the same events; everything else
(REST API v1, ALB, other ASGI apps) goes through mangum with lifespan off.
Inside Lambda the function's settings are checked at init too, so a missing
variable fails the first invocation with one clear error naming it (never
its value); a secret store that does not answer (throttling, an outage) does
not fail the init: requests answer 503 UNAVAILABLE with Retry-After until a
read succeeds, and logs become JSON lines carrying Lambda's request id
(shared/observability.py).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
from typing import Any, Callable
from urllib.parse import unquote

from mangum import Mangum

log = logging.getLogger("nexus.lambda")

_INTERNAL = {
    "statusCode": 500,
    "headers": {"content-type": "application/json", "cache-control": "no-store"},
    "body": json.dumps({"error": "INTERNAL", "message": "Something went wrong on our side."}, separators=(",", ":")),
    "isBase64Encoded": False,
}


class LambdaHandler:
    """A Lambda handler for one ASGI app.

    - A JsonApp answering a payload-2.0 event (what Function URLs send) is
      called directly: its handlers are synchronous, so mangum's asyncio cycle
      and its scope building, about a quarter of the warm request's overhead
      over its floor (see bench/), buy nothing. The mapping mirrors mangum's;
      tests hold the two to identical results.
    - Anything else goes through mangum, on an event loop this handler owns:
      mangum uses the thread's *current* loop, which `asyncio.run()` (e.g. a
      livekit-api call elsewhere in the process) unsets when it ends.
    - An event that cannot be mapped gets the shared 500 envelope instead of
      a Lambda error, which a Function URL would turn into a bare 502.
    """

    def __init__(self, app: Callable):
        from shared.http import JsonApp

        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        self._mangum = Mangum(app, lifespan="off")
        self._json_app = app if isinstance(app, JsonApp) else None

    def __call__(self, event: dict, context: Any) -> dict:
        try:
            if self._json_app is not None and event.get("version") == "2.0":
                return self._function_url(event, context)
            if self._loop.is_closed():
                self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            return self._mangum(event, context)
        except Exception:
            log.exception("event could not be handled")
            return dict(_INTERNAL)

    def _function_url(self, event: dict, context: Any) -> dict:
        from shared.http import Request

        http = event["requestContext"]["http"]
        headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
        if event.get("cookies"):
            headers["cookie"] = "; ".join(event["cookies"])
        body = event.get("body") or ""
        raw = base64.b64decode(body) if event.get("isBase64Encoded") else body.encode()
        request = Request(method=http["method"].upper(), path=unquote(http.get("path") or "/"), headers=headers,
                          body=raw, query=event.get("rawQueryString") or "",
                          _request_id=getattr(context, "aws_request_id", None)
                          or event["requestContext"].get("requestId"))
        status, response_headers, payload = self._json_app.respond_to(request)  # type: ignore[union-attr]

        out_headers: dict[str, str] = {}
        cookies: list[str] = []
        for k, v in response_headers:
            name, value = k.decode("latin-1"), v.decode("latin-1")
            if name == "set-cookie":
                cookies.append(value)
            elif name in out_headers:
                out_headers[name] = f"{out_headers[name]},{value}"
            else:
                out_headers[name] = value
        out_headers.setdefault("content-type", "application/json")  # as mangum labels every response
        result: dict[str, Any] = {"statusCode": status, "headers": out_headers, "isBase64Encoded": False}
        try:
            result["body"] = payload.decode()
        except UnicodeDecodeError:
            result["body"], result["isBase64Encoded"] = base64.b64encode(payload).decode(), True
        if cookies:
            result["cookies"] = cookies
        return result


def lambda_handler(app: Callable, require: tuple[str, ...] = ()) -> Callable[[dict, Any], dict]:
    if os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):
        from shared.observability import configure_logging

        configure_logging()
        if require:
            from shared.config import SecretsUnavailable, get_settings

            try:
                get_settings().require(*require)
            except SecretsUnavailable:
                # Throttled or unreachable store: the container stays up, each
                # request answers 503 until a read succeeds (logged in config).
                pass
    return LambdaHandler(app)
