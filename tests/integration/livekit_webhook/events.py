"""LiveKit-shaped webhook events, signed the way LiveKit signs them.

Bodies are protojson as LiveKit's server writes them (camelCase, int64 as
strings, zero values and false omitted: livekit-server v1.9.11's own deliveries
were read side by side, see docs/decisions.md); signatures come from
livekit-api's own AccessToken().with_sha256().
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import uuid
from typing import Any

from livekit import api

from tests import support

HEADERS = {"content-type": "application/webhook+json"}


def body_hash(body: bytes) -> str:
    return base64.b64encode(hashlib.sha256(body).digest()).decode()


def sign(body: bytes, *, key: str = support.LIVEKIT_KEY, secret: str = support.LIVEKIT_SECRET,
         ttl: datetime.timedelta = datetime.timedelta(minutes=5)) -> str:
    """The Authorization value LiveKit sends: a bare JWT over the body's sha256."""
    return api.AccessToken(key, secret).with_sha256(body_hash(body)).with_ttl(ttl).to_jwt()


def encode(event: dict[str, Any]) -> bytes:
    return json.dumps(event, separators=(",", ":")).encode()


def signed(event: dict[str, Any], **sign_args: Any) -> tuple[bytes, dict[str, str]]:
    body = encode(event)
    return body, {**HEADERS, "authorization": sign(body, **sign_args)}


def new_id() -> str:
    return f"EV_{uuid.uuid4().hex[:16]}"


def room_event(kind: str, room: str, room_sid: str, at: float, *, created: float | None = None,
               event_id: str | None = None) -> dict[str, Any]:
    created_s = int(created if created is not None else at)
    return {
        "event": kind,
        "id": event_id or new_id(),
        "createdAt": str(int(at)),
        "room": {"sid": room_sid, "name": room, "emptyTimeout": 300, "creationTime": str(created_s),
                 "creationTimeMs": str(int((created if created is not None else at) * 1000))},
    }


def participant_event(kind: str, room: str, room_sid: str, identity: str, sid: str, at: float, joined: float,
                      *, metadata: dict[str, Any] | None = None, reason: str | None = None,
                      name: str | None = None, event_id: str | None = None) -> dict[str, Any]:
    participant: dict[str, Any] = {
        "sid": sid,
        "identity": identity,
        "state": "ACTIVE" if kind == "participant_joined" else "DISCONNECTED",
        "joinedAt": str(int(joined)),
        "joinedAtMs": str(int(joined * 1000)),
        "name": name or identity,
        "metadata": json.dumps(metadata) if metadata is not None else "",
        "version": 2 if kind == "participant_joined" else 3,
        "permission": {"canPublish": True, "canSubscribe": True, "canPublishData": True},
    }
    if reason:
        participant["disconnectReason"] = reason
    return {
        "event": kind,
        "id": event_id or new_id(),
        "createdAt": str(int(at)),
        "room": {"sid": room_sid, "name": room},
        "participant": participant,
    }


def egress_event(kind: str, room: str, egress_id: str, status: str, at: float, *,
                 updated_ns: int | None = None, error: str = "") -> dict[str, Any]:
    info: dict[str, Any] = {"egressId": egress_id, "roomId": "RM_x", "roomName": room, "status": status,
                            "startedAt": str(int(at * 1e9)), "updatedAt": str(updated_ns or int(at * 1e9))}
    if error:
        info["error"] = error
    if status in ("EGRESS_COMPLETE", "EGRESS_FAILED"):
        info["endedAt"] = str(int(at * 1e9))
    return {"event": kind, "id": new_id(), "createdAt": str(int(at)), "egressInfo": info}


FUNCTION_URL_DOMAIN = "abcdefghijklmnopqrstuvwxyz012345.lambda-url.eu-north-1.on.aws"


def function_url_event(body: bytes, headers: dict[str, str], *, b64: bool = True, method: str = "POST") -> dict:
    """A Lambda Function URL invocation (payload format 2.0) as AWS delivers it."""
    import time

    now = time.time()
    prefix = FUNCTION_URL_DOMAIN.split(".")[0]
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": "/",
        "rawQueryString": "",
        "headers": {"host": FUNCTION_URL_DOMAIN, "x-forwarded-proto": "https", "x-forwarded-port": "443",
                    "x-forwarded-for": "203.0.113.7", "user-agent": "Go-http-client/1.1",
                    **{k.lower(): v for k, v in headers.items()}},
        "requestContext": {
            "accountId": "anonymous", "apiId": prefix, "domainName": FUNCTION_URL_DOMAIN, "domainPrefix": prefix,
            "http": {"method": method, "path": "/", "protocol": "HTTP/1.1", "sourceIp": "203.0.113.7",
                     "userAgent": "Go-http-client/1.1"},
            "requestId": str(uuid.uuid4()), "routeKey": "$default", "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)), "timeEpoch": int(now * 1000),
        },
        "body": base64.b64encode(body).decode() if b64 else body.decode("utf-8"),
        "isBase64Encoded": b64,
    }


class LambdaContext:
    function_name = "livekit-webhook"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:eu-north-1:123456789012:function:livekit-webhook"

    def __init__(self, remaining_ms: int = 30_000):
        self.aws_request_id = str(uuid.uuid4())
        self._remaining = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self._remaining
