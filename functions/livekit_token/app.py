"""livekit-token: a LiveKit access token for a voice net or a sim pod, by rank.

POST {roomName, participantName} with `Authorization: Bearer <Supabase token>`.
Identity is the verified token's `sub`; rank is read from the database now.
The name others see is the member's callsign: participantName is accepted
(the runbook sends it) but never shown, so nobody can pose as someone else.
A room that is a sim pod admits only its cadet and guide while it is live.
A net's answer also carries a token for each bridged net the caller may
join, under that net's own thresholds. One SQL round trip decides it all.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from shared import db, livekit_tokens
from shared.auth import authenticate, get_verifier
from shared.config import get_settings
from shared.errors import ApiError
from shared.http import JsonApp, Request, Response, iso_utc
from shared.lambda_adapter import lambda_handler
from shared.observability import count
from shared.ranks import VoiceGrants, is_brigged, net_grants, sim_pod_grants
from shared.text_rules import Stripped


class TokenRequest(BaseModel):
    # Unknown fields (a client-sent `identity` or `role`) are ignored: they
    # must never influence who the token is for or what it grants.
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    roomName: Annotated[str, Stripped(128)]
    # Still validated for the runbook's curl, but the LiveKit name comes from the profile.
    participantName: Annotated[str, Stripped(64)] | None = None


# Response models: the contract in openapi.json (nexus/openapi.py); the handler builds the dicts itself.
class GrantsOut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    canJoin: bool
    canSubscribe: bool
    canPublish: bool
    canPublishData: bool


class BridgedNetToken(BaseModel):
    model_config = ConfigDict(extra="forbid")

    netId: UUID
    roomName: str
    token: str
    grants: GrantsOut


class TokenResponse(BaseModel):
    """A token for the room and one for each bridged net the caller may join."""

    model_config = ConfigDict(extra="forbid")

    token: str
    serverUrl: str
    identity: UUID
    roomName: str
    expiresAt: datetime
    grants: GrantsOut
    bridges: list[BridgedNetToken]
    publishAfterJoinCheck: bool = Field(
        description="Strict mode: the token carries no publish right; `grants` arrive in place once the "
                    "server's join check passed (wait for ParticipantPermissionsChanged before enabling the mic).")
    simPodId: SkipJsonSchema[None] | str = Field(None, description="Present when the room is a sim pod's.")


def _grants_on(rank: str, net: dict[str, Any]) -> VoiceGrants:
    return net_grants(rank, net["min_rank_to_join"], net["min_rank_to_rx"], net["min_rank_to_tx"])


def _sim_pod_grants(user_id: str, rank: str, pod: dict[str, Any]) -> tuple[VoiceGrants, int]:
    """Grants in a pod room and the seconds it has left; only its two members, only while live."""
    if user_id not in (pod["cadet_id"], pod["guide_id"]):
        raise ApiError("FORBIDDEN", "This sim pod admits only its cadet and guide.")
    if not pod["live"]:
        raise ApiError("FORBIDDEN", "This sim pod has ended.")
    return sim_pod_grants(rank), max(1, int(pod["seconds_left"]))


def issue_token(request: Request) -> Response:
    settings = get_settings().require("database", "auth", "livekit")
    caller = authenticate(get_verifier(), request.header("authorization"))
    request.user_id = caller.user_id
    body: TokenRequest = request.model(TokenRequest, settings.MAX_BODY_BYTES)

    context = db.call("livekit_token_context", p_user_id=caller.user_id, p_room=body.roomName)
    profile, net, pod = context.get("profile"), context.get("net"), context.get("sim_pod")
    if profile is None:
        raise ApiError("FORBIDDEN", "Your account has no member profile yet.")
    if is_brigged(profile["roles"]):
        raise ApiError("FORBIDDEN", "You are in the brig and cannot join voice nets.")
    rank = profile["rank"]
    ttl = settings.LIVEKIT_TOKEN_TTL_SECONDS
    bridged: list[dict[str, Any]] = []
    if pod is not None:
        # A pod's room is checked before any net: no net may borrow its name.
        grants, seconds_left = _sim_pod_grants(caller.user_id, rank, pod)
        room, ttl = pod["room_name"], livekit_tokens.sim_pod_token_ttl(ttl, seconds_left)
    else:
        if net is None:
            raise ApiError("NOT_FOUND", f"There is no voice net named {body.roomName!r}.")
        grants = _grants_on(rank, net)
        if not grants.can_join:
            raise ApiError(
                "INSUFFICIENT_CLEARANCE",
                f"Joining {net['code']} needs rank {net['min_rank_to_join']} or higher.",
                {"required": net["min_rank_to_join"], "rank": rank},
            )
        room, bridged = net["code"], context.get("bridges") or []

    def mint(room_name: str, room_grants: VoiceGrants) -> tuple[str, int]:
        return livekit_tokens.mint_participant_token(
            api_key=settings.LIVEKIT_API_KEY or "",
            api_secret=settings.LIVEKIT_API_SECRET.get_secret_value() if settings.LIVEKIT_API_SECRET else "",
            identity=caller.user_id,
            room=room_name,
            grants=room_grants,
            ttl_seconds=ttl,
            name=livekit_tokens.display_name(profile, caller.user_id),
            metadata={"userId": caller.user_id, "rank": rank},
            room_config=livekit_tokens.sim_pod_room_config() if pod is not None else None,
            publish_after_join_check=settings.LIVEKIT_PUBLISH_AFTER_JOIN_CHECK,
        )

    token, expires_at = mint(room, grants)
    answer: dict[str, Any] = {
        "token": token,
        "serverUrl": settings.livekit_server_url,
        "identity": caller.user_id,
        "roomName": room,
        "expiresAt": iso_utc(expires_at),
        "grants": grants.as_response(),
        "bridges": [],
        "publishAfterJoinCheck": settings.LIVEKIT_PUBLISH_AFTER_JOIN_CHECK,
    }
    if pod is not None:
        answer["simPodId"] = pod["id"]
    for other in bridged:
        other_grants = _grants_on(rank, other)
        if other_grants.can_join:
            answer["bridges"].append({
                "netId": other["id"],
                "roomName": other["code"],
                "token": mint(other["code"], other_grants)[0],
                "grants": other_grants.as_response(),
            })
    count("TokensMinted", 1 + len(answer["bridges"]), function="livekit-token")
    return Response(200, answer)


app = JsonApp("livekit-token", {"POST": issue_token}, cors_origins=lambda: get_settings().CORS_ALLOW_ORIGINS)
handler = lambda_handler(app, require=("database", "auth", "livekit"))
