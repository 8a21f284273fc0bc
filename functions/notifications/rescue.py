"""handle-rescue-request: launch a rescue flare to every medic and rescuer.

POST `{location, flareType: MEDICAL|COMBAT}`, scout and above. One SQL
function checks rank (from the database, now) and the per-member rate limit,
then writes the flare and one notification per responder. Delivery then
starts at once, inline: this flare's deliveries are sent concurrently, and
every send ends within PUSH_INLINE_BUDGET_SECONDS of the flare being stored,
however slowly a push service answers; whatever is left (slow or failing
push services) the scheduled fan-out finishes. The inline path is the same claim
/ send / report as the worker, so the two never send one delivery twice.
docs/decisions.md ("Rescue flares are delivered inline") has the measurements.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

# pywebpush (and its aiohttp import) is on this function's path on purpose:
# it sends the flare. Imported at init, so it is paid in Lambda's init phase
# (typically by the CORS preflight) rather than while a member waits.
from functions.notifications.delivery import get_fanout
from shared import db
from shared.auth import authenticate, get_verifier
from shared.config import get_settings
from shared.errors import ApiError
from shared.http import JsonApp, Request, Response
from shared.lambda_adapter import lambda_handler
from shared.observability import count
from shared.text_rules import NO_CONTROL, Stripped

log = logging.getLogger("nexus.push.rescue")

MAX_BODY_BYTES = 4096


class FlareBody(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    location: Annotated[str, Stripped(200), NO_CONTROL]
    flareType: Literal["MEDICAL", "COMBAT"]


class FlareLaunched(BaseModel):
    """The flare is stored and its pushes queued; `devicesReached` were delivered before this answer."""

    model_config = ConfigDict(extra="forbid")

    flareId: UUID
    status: Literal["FLARE_LAUNCHED"]
    respondersQueued: int = Field(ge=0)
    devicesQueued: int = Field(ge=0)
    devicesReached: int = Field(ge=0)


def launch_flare(request: Request) -> Response:
    settings = get_settings().require("database", "auth", "vapid")
    caller = authenticate(get_verifier(), request.header("authorization"))
    request.user_id = caller.user_id
    body: FlareBody = request.model(FlareBody, min(MAX_BODY_BYTES, settings.MAX_BODY_BYTES))

    result: dict[str, Any] = db.call("launch_rescue_flare", p_user_id=caller.user_id, p_flare_type=body.flareType,
                                     p_location=body.location, p_window_seconds=settings.FLARE_RATE_LIMIT_SECONDS)
    error = result.get("error")
    if error == "NO_PROFILE":
        raise ApiError("FORBIDDEN", "Your account has no member profile yet.")
    if error == "INSUFFICIENT_CLEARANCE":
        raise ApiError("INSUFFICIENT_CLEARANCE", "Launching a rescue flare needs rank scout or higher.",
                       {"required": result["required"], "rank": result["rank"]})
    if error == "RATE_LIMITED":
        retry = int(result["retryAfter"])
        raise ApiError("RATE_LIMITED", f"You launched a flare moments ago; you can launch another in {retry} s.",
                       {"retryAfter": retry}, headers={"Retry-After": str(retry)})

    reached = _deliver_now(result["notificationIds"], settings) if result["devicesQueued"] else 0
    return Response(202, {
        "flareId": result["flareId"],
        "status": "FLARE_LAUNCHED",
        "respondersQueued": result["respondersQueued"],
        "devicesQueued": result["devicesQueued"],
        "devicesReached": reached,
    })


def _deliver_now(notification_ids: list[str], settings: Any) -> int:
    """Send this flare's deliveries within the inline budget; the flare is
    already durable, so any failure here is left to the scheduled fan-out."""
    budget = settings.PUSH_INLINE_BUDGET_SECONDS
    if budget <= 0 or not notification_ids:
        return 0
    # Every send ends by the deadline whatever the push service does (the
    # watchdog in shared/push_transport.py), so the member waits the budget
    # at most, plus the last report's round trip.
    timeout = (min(settings.PUSH_CONNECT_TIMEOUT_SECONDS, budget), min(settings.PUSH_READ_TIMEOUT_SECONDS, budget))
    try:
        summary = get_fanout(settings).drain(deadline=time.monotonic() + budget,
                                             notification_ids=notification_ids, timeout=timeout)
    except Exception:
        log.exception("inline flare delivery failed; the scheduled fan-out will deliver",
                      extra={"function": "handle-rescue-request"})
        return 0
    for name, key in (("PushSent", "sent"), ("PushRetried", "retry"), ("PushFailed", "failed"), ("PushGone", "gone")):
        count(name, summary.outcomes.get(key, 0), function="handle-rescue-request")
    return summary.outcomes.get("sent", 0)


app = JsonApp("handle-rescue-request", {"POST": launch_flare}, cors_origins=lambda: get_settings().CORS_ALLOW_ORIGINS)
handler = lambda_handler(app, require=("database", "auth", "vapid"))
if os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):
    # In the init phase: the VAPID key pair is checked (a mismatch fails the
    # deploy's first invocation loudly) and the pooled session is built.
    get_fanout(get_settings())
