"""LiveKit webhook deliveries: signature verification and the event's shape.

LiveKit signs each delivery with the API key pair (there is no separate
webhook secret): the `Authorization` header carries a bare HS256 JWT whose
issuer is the API key and whose `sha256` claim is the base64 SHA-256 of the
raw body. We check it the way livekit-api's WebhookReceiver does, with PyJWT
only: `livekit.api` drags aiohttp and protobuf onto the hot path. Tests sign
deliveries with livekit-api's own AccessToken().with_sha256(...).

The body must be hashed exactly as received: any re-serialization (even of
the same JSON) changes the hash and is rejected, as it should be.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from typing import Any

import jwt
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from shared.http import BodyNotJson, decode_json, field_errors

# LiveKit's own verifier allows a minute of clock skew.
LEEWAY_SECONDS = 60

PARTICIPANT_EVENTS = frozenset({"participant_joined", "participant_left", "participant_connection_aborted"})
ROOM_EVENTS = frozenset({"room_started", "room_finished"})
EGRESS_EVENTS = frozenset({"egress_started", "egress_updated", "egress_ended"})


class InvalidSignature(Exception):
    """The delivery is not provably from LiveKit; `reason` is for logs only."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class MalformedEvent(Exception):
    def __init__(self, message: str, fields: dict[str, str] | None = None):
        super().__init__(message)
        self.fields = fields or {}


def verify_signature(body: bytes, authorization: str | None, *, api_key: str, api_secret: str,
                     leeway: int = LEEWAY_SECONDS) -> dict[str, Any]:
    """Claims of a valid webhook token for exactly this body, else InvalidSignature."""
    token = (authorization or "").strip()
    if token[:7].lower() == "bearer ":
        token = token[7:].strip()
    if not token:
        raise InvalidSignature("missing authorization")
    try:
        claims = jwt.decode(token, api_secret, algorithms=["HS256"], issuer=api_key, leeway=leeway,
                            options={"require": ["exp", "iss"]})
    except jwt.PyJWTError as e:
        raise InvalidSignature(type(e).__name__) from None
    claimed = claims.get("sha256")
    if not isinstance(claimed, str) or not claimed:
        raise InvalidSignature("no sha256 claim")
    try:
        expected = base64.b64decode(claimed, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidSignature("sha256 claim is not base64") from None
    if not hmac.compare_digest(expected, hashlib.sha256(body).digest()):
        raise InvalidSignature("body hash mismatch")
    return claims


class _Room(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str = Field("", max_length=256)
    sid: str = Field("", max_length=128)


class _Participant(BaseModel):
    model_config = ConfigDict(extra="ignore")
    sid: str = Field("", max_length=128)
    identity: str = Field("", max_length=256)


class _Egress(BaseModel):
    model_config = ConfigDict(extra="ignore")
    egressId: str = Field("", max_length=128)
    roomName: str = Field("", max_length=256)


def _needs_schema(schema: dict[str, Any]) -> None:
    """`WebhookEvent._needs` for openapi.json: which fields each kind of event must carry."""
    def present(*names: str) -> dict[str, Any]:
        return {"type": "object", "required": list(names),
                "properties": {n: {"type": "string", "minLength": 1} for n in names}}

    rules = [(PARTICIPANT_EVENTS, {"room": present("name"), "participant": present("sid", "identity")}),
             (ROOM_EVENTS, {"room": present("name", "sid")}),
             (EGRESS_EVENTS, {"egressInfo": present("egressId")})]
    schema["allOf"] = [{"if": {"required": ["event"], "properties": {"event": {"enum": sorted(events)}}},
                        "then": {"required": sorted(needs), "properties": needs}} for events, needs in rules]


class WebhookEvent(BaseModel):
    """What we rely on in LiveKit's WebhookEvent (protojson, camelCase, int64 as strings)."""

    model_config = ConfigDict(extra="ignore", json_schema_extra=_needs_schema)

    event: str = Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$")
    id: str | None = Field(None, min_length=1, max_length=128)
    # seconds since the epoch, up to the year 5000; protojson writes int64 as a string
    createdAt: int | None = Field(None, ge=0, le=95617584000, json_schema_extra={"anyOf": [
        {"type": "integer", "minimum": 0, "maximum": 95617584000}, {"type": "string", "pattern": "^[0-9]{1,11}$"},
        {"type": "null"}]})
    room: _Room | None = None
    participant: _Participant | None = None
    egressInfo: _Egress | None = None

    @field_validator("createdAt", mode="before")
    @classmethod
    def _seconds(cls, v: Any) -> Any:
        # Exactly what the schema says: pydantic's lax int would also take true/false, "1.0" or " 1".
        if v is None or (isinstance(v, int) and not isinstance(v, bool)):
            return v
        if isinstance(v, float) and v.is_integer():
            return int(v)  # 10.0: JSON Schema's "integer" (and JSON itself) does not tell it from 10
        if isinstance(v, str) and v.isascii() and v.isdigit() and len(v) <= 11:
            return int(v)
        raise ValueError("createdAt must be whole seconds, as a number or a string of digits")

    @model_validator(mode="after")
    def _needs(self) -> "WebhookEvent":
        missing: list[str] = []
        if self.event in PARTICIPANT_EVENTS:
            if not (self.room and self.room.name):
                missing.append("room.name")
            if not (self.participant and self.participant.sid):
                missing.append("participant.sid")
            if not (self.participant and self.participant.identity):
                missing.append("participant.identity")
        elif self.event in ROOM_EVENTS:
            if not (self.room and self.room.name):
                missing.append("room.name")
            if not (self.room and self.room.sid):
                missing.append("room.sid")
        elif self.event in EGRESS_EVENTS and not (self.egressInfo and self.egressInfo.egressId):
            missing.append("egressInfo.egressId")
        if missing:
            raise ValueError(f"{self.event} needs " + ", ".join(missing))
        return self


def parse_event(body: bytes) -> tuple[WebhookEvent, str]:
    """The validated event and the body as text (stored verbatim), else MalformedEvent."""
    try:
        payload, text = decode_json(body)
    except BodyNotJson as e:
        raise MalformedEvent(str(e)) from None
    if not isinstance(payload, dict):
        raise MalformedEvent("The body must be a JSON object.")
    try:
        return WebhookEvent.model_validate(payload), text
    except ValidationError as e:
        raise MalformedEvent("The webhook event is malformed.", field_errors(e)) from None


def event_id(event: WebhookEvent, claims: dict[str, Any]) -> str:
    """LiveKit's event id; servers too old to send one are deduplicated by body hash."""
    return event.id or f"sha256:{claims['sha256']}"
