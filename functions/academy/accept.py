"""academy-accept: a certified guide takes a pending request and opens a sim pod.

POST {requestId} with `Authorization: Bearer <Supabase token>`. The guide is
the verified caller (never a body field), must be certified for the
request's skill and must not be its cadet; the request must be PENDING.
`public.academy_accept` settles all of it and creates the pod in one
transaction, so of any number of concurrent accepts exactly one wins and the
rest get 409. The cadet is notified and fetches their own token from
livekit-token with the pod's room name.

Answers {simPodId, roomName, expiresAt, connectionTokens: [{identity, role: "guide", token}]}.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from shared import db, livekit_tokens
from shared.auth import authenticate, get_verifier
from shared.config import get_settings
from shared.errors import ApiError
from shared.http import JsonApp, Request, Response, iso_utc
from shared.lambda_adapter import lambda_handler
from shared.observability import count
from shared.ranks import sim_pod_grants


class AcceptRequest(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    requestId: UUID


class ConnectionToken(BaseModel):
    model_config = ConfigDict(extra="forbid")

    identity: UUID
    role: Literal["guide"]
    token: str


class AcceptResponse(BaseModel):
    """The pod is open; the guide's token is here, the cadet fetches theirs from livekit-token."""

    model_config = ConfigDict(extra="forbid")

    simPodId: str
    roomName: str
    requestId: UUID
    expiresAt: datetime
    serverUrl: str
    connectionTokens: list[ConnectionToken]


def _refusal(result: dict) -> ApiError:
    error = result["error"]
    # NOT_PENDING without a status: the request was deleted (its cadet's deletion) while this
    # accept waited on it.
    if error == "REQUEST_NOT_FOUND" or (error == "NOT_PENDING" and result.get("status") is None):
        return ApiError("NOT_FOUND", "There is no instruction request with that id.")
    if error == "NOT_PENDING":
        return ApiError("CONFLICT", "This request is no longer pending.",
                        {"requestId": result["requestId"], "status": result["status"]})
    if error == "NOT_CERTIFIED":
        return ApiError("FORBIDDEN", "You are not certified to guide this skill.")
    if error == "OWN_REQUEST":
        return ApiError("FORBIDDEN", "You cannot accept your own request.")
    if error == "BRIGGED":
        return ApiError("FORBIDDEN", "You are in the brig and cannot guide.")
    return ApiError("FORBIDDEN", "Your account has no member profile yet.")  # NO_PROFILE


def accept_request(request: Request) -> Response:
    # livekit is required up front: a guide must never win a pod they get no token for.
    settings = get_settings().require("database", "auth", "livekit")
    caller = authenticate(get_verifier(), request.header("authorization"))
    request.user_id = caller.user_id
    body: AcceptRequest = request.model(AcceptRequest, settings.MAX_BODY_BYTES)

    pod = db.call("academy_accept", p_user_id=caller.user_id, p_request_id=str(body.requestId),
                  p_pod_ttl_seconds=settings.SIM_POD_TTL_SECONDS,
                  p_max_age_seconds=settings.ACADEMY_REQUEST_MAX_AGE_SECONDS)
    if "error" in pod:
        raise _refusal(pod)

    guide = pod["guide"]
    # Short, and never past the pod: to rejoin later the guide asks livekit-token, which checks the pod is live.
    ttl = livekit_tokens.sim_pod_token_ttl(settings.LIVEKIT_TOKEN_TTL_SECONDS, int(pod["expiresAt"]) - int(time.time()))
    token, _ = livekit_tokens.mint_participant_token(
        api_key=settings.LIVEKIT_API_KEY or "",
        api_secret=settings.LIVEKIT_API_SECRET.get_secret_value() if settings.LIVEKIT_API_SECRET else "",
        identity=caller.user_id,
        room=pod["roomName"],
        grants=sim_pod_grants(guide["rank"]),
        ttl_seconds=ttl,
        name=livekit_tokens.display_name(guide, caller.user_id),
        metadata={"userId": caller.user_id, "rank": guide["rank"]},
        room_config=livekit_tokens.sim_pod_room_config(),
        publish_after_join_check=settings.LIVEKIT_PUBLISH_AFTER_JOIN_CHECK,
    )
    count("TokensMinted", function="academy-accept")
    return Response(200, {
        "simPodId": pod["simPodId"],
        "roomName": pod["roomName"],
        "requestId": pod["requestId"],
        "expiresAt": iso_utc(int(pod["expiresAt"])),
        "serverUrl": settings.livekit_server_url,
        "connectionTokens": [{"identity": caller.user_id, "role": "guide", "token": token}],
    })


app = JsonApp("academy-accept", {"POST": accept_request}, cors_origins=lambda: get_settings().CORS_ALLOW_ORIGINS)
handler = lambda_handler(app, require=("database", "auth", "livekit"))
