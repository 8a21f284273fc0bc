"""livekit-token: a LiveKit access token for a voice net or a sim pod, by rank.

POST {roomName, participantName} with `Authorization: Bearer <Supabase token>`.
Identity is the verified token's `sub`; rank is read from the database now.
A room that is a sim pod admits only its cadet and guide while it is live.
A net's answer also carries a token for each bridged net the caller may
join, under that net's own thresholds. One SQL round trip decides it all.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from shared import db, livekit_tokens
from shared.auth import authenticate, get_verifier
from shared.config import get_settings
from shared.errors import ApiError
from shared.http import JsonApp, Request, Response, iso_utc
from shared.lambda_adapter import lambda_handler
from shared.ranks import VoiceGrants, is_brigged, net_grants, sim_pod_grants


class TokenRequest(BaseModel):
    # Unknown fields (a client-sent `identity` or `role`) are ignored: they
    # must never influence who the token is for or what it grants.
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    roomName: str = Field(min_length=1, max_length=128)
    participantName: str | None = Field(default=None, min_length=1, max_length=64)


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
        room, ttl = pod["room_name"], min(ttl, seconds_left)
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
            name=body.participantName or profile.get("callsign") or None,
            metadata={"userId": caller.user_id, "rank": rank},
        )

    token, expires_at = mint(room, grants)
    answer: dict[str, Any] = {
        "token": token,
        "serverUrl": settings.LIVEKIT_URL,
        "identity": caller.user_id,
        "roomName": room,
        "expiresAt": iso_utc(expires_at),
        "grants": grants.as_response(),
        "bridges": [],
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
    return Response(200, answer)


app = JsonApp("livekit-token", {"POST": issue_token}, cors_origins=lambda: get_settings().CORS_ALLOW_ORIGINS)
handler = lambda_handler(app, require=("database", "auth", "livekit"))
