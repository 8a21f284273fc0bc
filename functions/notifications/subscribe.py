"""notifications-subscribe: store (POST) or remove (DELETE) the caller's browser push subscription.

POST `{endpoint, auth, p256dh}` or a browser `PushSubscription` JSON
(`{endpoint, expirationTime, keys: {p256dh, auth}}`); DELETE `{endpoint}`.
Both answer `{success: true}`. The subscription belongs to the verified
token's `sub`; re-subscribing an endpoint moves it to the caller; the
oldest devices beyond the per-member cap are evicted. See
shared/push_subscriptions.py for what an acceptable endpoint is.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared import db
from shared.auth import authenticate, get_verifier
from shared.config import get_settings
from shared.errors import ApiError, bad_request
from shared.http import JsonApp, Request, Response
from shared.lambda_adapter import lambda_handler
from shared.push_subscriptions import (AUTH_FORMAT, DEPLOYED_ENDPOINT_PATTERN, ENDPOINT_CHARS, MAX_ENDPOINT_LENGTH,
                                      P256DH_FORMAT, InvalidSubscription, validate_auth, validate_endpoint,
                                      validate_p256dh)
from shared.text_rules import add_pattern

# Generous for a 2 KB endpoint plus keys, far below anything that could hurt.
MAX_BODY_BYTES = 8192


class SubscriptionKeys(BaseModel):
    model_config = ConfigDict(extra="ignore")

    p256dh: Annotated[str, Field(min_length=1, max_length=128), P256DH_FORMAT]
    auth: Annotated[str, Field(min_length=1, max_length=64), AUTH_FORMAT]


def _key_shapes(schema: dict[str, Any]) -> None:
    # validate_endpoint's scheme rule for a deployed stack, for openapi.json (only there: dev
    # mode also accepts http:// to loopback, so the model itself does not check it).
    add_pattern(schema["properties"]["endpoint"], DEPLOYED_ENDPOINT_PATTERN)
    # The model validator's rule, for openapi.json: the pair under `keys`, or (when
    # `keys` is absent or null) at the top level, where it then must have their formats.
    schema["anyOf"] = [
        {"required": ["keys"], "properties": {"keys": {"type": "object"}}},
        {"required": ["p256dh", "auth"],
         "properties": {"keys": {"type": "null"},
                        "p256dh": {"type": "string", "pattern": P256DH_FORMAT.pattern},
                        "auth": {"type": "string", "pattern": AUTH_FORMAT.pattern}}},
    ]


class SubscribeBody(BaseModel):
    # Browsers may add fields to PushSubscription JSON; they are ignored.
    model_config = ConfigDict(extra="ignore", json_schema_extra=_key_shapes)

    endpoint: Annotated[str, Field(min_length=1, max_length=MAX_ENDPOINT_LENGTH), ENDPOINT_CHARS]
    expirationTime: int | float | None = None
    keys: SubscriptionKeys | None = None
    p256dh: str | None = Field(default=None, min_length=1, max_length=128)
    auth: str | None = Field(default=None, min_length=1, max_length=64)

    @model_validator(mode="after")
    def _one_key_shape(self) -> "SubscribeBody":
        if self.keys is None and (self.p256dh is None or self.auth is None):
            raise ValueError("give p256dh and auth, either at the top level or under keys")
        return self

    def key_pair(self) -> tuple[str, str]:
        if self.keys is not None:
            return self.keys.p256dh, self.keys.auth
        assert self.p256dh is not None and self.auth is not None
        return self.p256dh, self.auth


class UnsubscribeBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    endpoint: str = Field(min_length=1, max_length=4096)


class Subscribed(BaseModel):
    """The subscription is stored for the caller."""

    model_config = ConfigDict(extra="forbid")

    success: Literal[True]


class Unsubscribed(BaseModel):
    """DELETE's body: `removed` is false when the caller had no such subscription."""

    model_config = ConfigDict(extra="forbid")

    success: Literal[True]
    removed: bool


def _invalid(e: InvalidSubscription) -> ApiError:
    return bad_request("The push subscription is invalid.", {"fields": {e.field: e.message}})


def subscribe(request: Request) -> Response:
    settings = get_settings().require("database", "auth")
    caller = authenticate(get_verifier(), request.header("authorization"))
    request.user_id = caller.user_id
    body: SubscribeBody = request.model(SubscribeBody, min(MAX_BODY_BYTES, settings.MAX_BODY_BYTES))
    p256dh, auth = body.key_pair()
    try:
        endpoint = validate_endpoint(body.endpoint, dev_mode=settings.dev_mode)
        p256dh = validate_p256dh(p256dh)
        auth = validate_auth(auth)
    except InvalidSubscription as e:
        raise _invalid(e) from None

    result: dict[str, Any] = db.call("push_subscription_upsert", p_user_id=caller.user_id, p_endpoint=endpoint,
                                     p_p256dh=p256dh, p_auth=auth, p_max_devices=settings.PUSH_MAX_DEVICES_PER_USER)
    if result.get("error") == "NO_PROFILE":
        raise ApiError("FORBIDDEN", "Your account has no member profile yet.")
    return Response(200, {"success": True})


def unsubscribe(request: Request) -> Response:
    settings = get_settings().require("database", "auth")
    caller = authenticate(get_verifier(), request.header("authorization"))
    request.user_id = caller.user_id
    body: UnsubscribeBody = request.model(UnsubscribeBody, min(MAX_BODY_BYTES, settings.MAX_BODY_BYTES))
    # Idempotent: unsubscribing twice, or an endpoint that is not the
    # caller's, succeeds without touching anything of anyone else's.
    result = db.call("push_subscription_delete", p_user_id=caller.user_id, p_endpoint=body.endpoint)
    return Response(200, {"success": True, "removed": bool(result.get("removed"))})


app = JsonApp("notifications-subscribe", {"POST": subscribe, "DELETE": unsubscribe},
              cors_origins=lambda: get_settings().CORS_ALLOW_ORIGINS)
handler = lambda_handler(app, require=("database", "auth"))
