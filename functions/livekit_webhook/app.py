"""livekit-webhook: LiveKit's signed events, made durable, then applied.

POST from LiveKit itself (server to server, no CORS). The bare JWT in
`Authorization` signs the raw body (shared/livekit_webhook.py). One SQL round
trip, `livekit_webhook_ingest`, stores the event deduplicated by its id and
applies it in the same transaction; only then do we answer 200. If applying
fails the stored event is retried by the worker (worker.py), still 200.
A participant_joined whose permission differs from the member's current rights
(more: an old token; less: strict mode's, LIVEKIT_PUBLISH_AFTER_JOIN_CHECK) is
corrected, granted or removed in LiveKit before the answer
(shared/livekit_access.py, docs/livekit-access.md).

401: missing, tampered, re-serialized, expired or wrong-key signature (checked
before anything is parsed or stored). 400: a signed but malformed event.
503: database unreachable, so LiveKit redelivers.
"""

from __future__ import annotations

import logging
from typing import Literal

from pydantic import BaseModel, ConfigDict

from shared import db
from shared.config import get_settings
from shared.errors import ApiError, bad_request, unauthorized
from shared.http import JsonApp, Request, Response
from shared.lambda_adapter import lambda_handler
from shared.observability import count
from shared.livekit_webhook import InvalidSignature, MalformedEvent, event_id, parse_event, verify_signature

log = logging.getLogger("nexus.livekit_webhook")


class WebhookAck(BaseModel):
    """The event is stored; `status` says what became of it (`queued`: the retry worker applies it)."""

    model_config = ConfigDict(extra="forbid")

    received: Literal[True]
    status: Literal["applied", "ignored", "duplicate", "queued"]


def receive(request: Request) -> Response:
    settings = get_settings().require("database", "livekit")
    if len(request.body) > settings.LIVEKIT_WEBHOOK_MAX_BODY_BYTES:
        raise ApiError("PAYLOAD_TOO_LARGE", f"The body exceeds {settings.LIVEKIT_WEBHOOK_MAX_BODY_BYTES} bytes.")
    try:
        claims = verify_signature(
            request.body, request.header("authorization"),
            api_key=settings.LIVEKIT_API_KEY or "",
            api_secret=settings.LIVEKIT_API_SECRET.get_secret_value() if settings.LIVEKIT_API_SECRET else "",
        )
    except InvalidSignature as e:
        log.warning("webhook signature rejected", extra={"reason": e.reason, "request_id": request.request_id})
        raise unauthorized("The webhook signature is missing or invalid.") from None
    try:
        event, text = parse_event(request.body)
    except MalformedEvent as e:
        raise bad_request(str(e), {"fields": e.fields} if e.fields else None) from None

    try:
        result = db.call("livekit_webhook_ingest", p_event_id=event_id(event, claims), p_payload=text,
                         p_created_at=event.createdAt)
    except db.DatabaseError as e:
        # Class 22 here is Postgres refusing the JSON itself (e.g. an escape jsonb cannot hold).
        if (e.sqlstate or "").startswith("22"):
            raise bad_request("The webhook event cannot be stored as JSON.") from None
        raise
    # WebhookEventsApplied, ...Ignored, ...Duplicate, ...Queued
    count(f"WebhookEvents{result['status'].capitalize()}", function="livekit-webhook")
    if result.get("accessJobId"):
        # A join whose permission differs from the member's rights now (a token
        # minted before a brig or demotion, a pod that ended, a deleted member;
        # strict mode's token without publish): corrected, granted or removed
        # before we answer, so an old token buys a moment at most.
        from shared.livekit_access import apply_now

        apply_now([result["accessJobId"]], settings.LIVEKIT_ACCESS_INLINE_BUDGET_SECONDS, settings)
        count("WebhookJoinsCorrected", function="livekit-webhook")
    if result["status"] == "queued":
        log.warning("webhook event stored, applying deferred to the worker",
                    extra={"event_type": event.event, "event_id": event.id, "job": result.get("jobId")})
    return Response(200, {"received": True, "status": result["status"]})


app = JsonApp("livekit-webhook", {"POST": receive})
handler = lambda_handler(app, require=("database", "livekit"))
