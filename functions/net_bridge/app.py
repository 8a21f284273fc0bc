"""net-bridge: founder+ links or unlinks two voice nets.

POST {sourceNetId, targetNetId, action: "link" | "unlink"} with
`Authorization: Bearer <Supabase token>`. A bridge joins an unordered pair:
link answers 201 with the new bridge or 200 with the existing one, whichever
way round the nets are given; unlink answers 200 with the removed bridge or
404. The rank check, both nets' existence and the change are one SQL call
(`public.net_bridge`), so a refusal writes nothing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from shared import db
from shared.auth import authenticate, get_verifier
from shared.config import get_settings
from shared.errors import ApiError, bad_request
from shared.http import JsonApp, Request, Response
from shared.lambda_adapter import lambda_handler


class BridgeRequest(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    sourceNetId: UUID
    targetNetId: UUID
    action: Literal["link", "unlink"]


class BridgeRow(BaseModel):
    """The voice_net_bridges row."""

    model_config = ConfigDict(extra="forbid")

    id: UUID
    source_net_id: UUID
    target_net_id: UUID
    created_by: UUID | None
    created_at: datetime


def _refusal(result: dict) -> ApiError:
    error = result["error"]
    if error == "INSUFFICIENT_CLEARANCE":
        return ApiError("INSUFFICIENT_CLEARANCE", "Bridging nets needs rank founder or higher.",
                        {"required": result["required"], "rank": result["rank"]})
    if error == "NO_PROFILE":
        return ApiError("FORBIDDEN", "Your account has no member profile yet.")
    if error == "BRIGGED":
        return ApiError("FORBIDDEN", "You are in the brig and cannot bridge nets.")
    if error == "NET_NOT_FOUND":
        return ApiError("NOT_FOUND", "No voice net has that id.",
                        {"missing": result["missing"]} if result.get("missing") else None)
    if error == "BRIDGE_NOT_FOUND":
        return ApiError("NOT_FOUND", "These two nets are not bridged.")
    return bad_request("The two nets must be different.")  # SAME_NET, BAD_ACTION


def bridge_nets(request: Request) -> Response:
    settings = get_settings().require("database", "auth")
    caller = authenticate(get_verifier(), request.header("authorization"))
    request.user_id = caller.user_id
    body: BridgeRequest = request.model(BridgeRequest, settings.MAX_BODY_BYTES)
    if body.sourceNetId == body.targetNetId:
        raise bad_request("A net cannot be bridged to itself.",
                          {"fields": {"targetNetId": "must differ from sourceNetId"}})

    result = db.call("net_bridge", p_user_id=caller.user_id, p_source_net_id=str(body.sourceNetId),
                     p_target_net_id=str(body.targetNetId), p_action=body.action)
    if "error" in result:
        raise _refusal(result)
    return Response(201 if result["outcome"] == "created" else 200, result["bridge"])


app = JsonApp("net-bridge", {"POST": bridge_nets}, cors_origins=lambda: get_settings().CORS_ALLOW_ORIGINS)
handler = lambda_handler(app, require=("database", "auth"))
