"""livekit-token: a LiveKit access token for a voice net, by rank.

POST {roomName, participantName} with `Authorization: Bearer <Supabase token>`.
Identity is the verified token's `sub`; rank is read from the database now.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from shared import db, livekit_tokens
from shared.auth import authenticate, get_verifier
from shared.config import get_settings
from shared.errors import ApiError
from shared.http import JsonApp, Request, Response, iso_utc
from shared.lambda_adapter import lambda_handler
from shared.ranks import is_brigged, net_grants


class TokenRequest(BaseModel):
    # Unknown fields (a client-sent `identity` or `role`) are ignored: they
    # must never influence who the token is for or what it grants.
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    roomName: str = Field(min_length=1, max_length=128)
    participantName: str | None = Field(default=None, min_length=1, max_length=64)


def issue_token(request: Request) -> Response:
    settings = get_settings().require("database", "auth", "livekit")
    caller = authenticate(get_verifier(), request.header("authorization"))
    request.user_id = caller.user_id
    body: TokenRequest = request.model(TokenRequest, settings.MAX_BODY_BYTES)

    context = db.call("livekit_token_context", p_user_id=caller.user_id, p_room=body.roomName)
    profile, net = context.get("profile"), context.get("net")
    if profile is None:
        raise ApiError("FORBIDDEN", "Your account has no member profile yet.")
    if is_brigged(profile["roles"]):
        raise ApiError("FORBIDDEN", "You are in the brig and cannot join voice nets.")
    if net is None:
        raise ApiError("NOT_FOUND", f"There is no voice net named {body.roomName!r}.")
    rank = profile["rank"]
    grants = net_grants(rank, net["min_rank_to_join"], net["min_rank_to_rx"], net["min_rank_to_tx"])
    if not grants.can_join:
        raise ApiError(
            "INSUFFICIENT_CLEARANCE",
            f"Joining {net['code']} needs rank {net['min_rank_to_join']} or higher.",
            {"required": net["min_rank_to_join"], "rank": rank},
        )

    token, expires_at = livekit_tokens.mint_participant_token(
        api_key=settings.LIVEKIT_API_KEY or "",
        api_secret=settings.LIVEKIT_API_SECRET.get_secret_value() if settings.LIVEKIT_API_SECRET else "",
        identity=caller.user_id,
        room=net["code"],
        grants=grants,
        ttl_seconds=settings.LIVEKIT_TOKEN_TTL_SECONDS,
        name=body.participantName or profile.get("callsign") or None,
        metadata={"userId": caller.user_id, "rank": rank},
    )
    return Response(200, {
        "token": token,
        "serverUrl": settings.LIVEKIT_URL,
        "identity": caller.user_id,
        "roomName": net["code"],
        "expiresAt": iso_utc(expires_at),
        "grants": grants.as_response(),
    })


app = JsonApp("livekit-token", {"POST": issue_token}, cors_origins=lambda: get_settings().CORS_ALLOW_ORIGINS)
handler = lambda_handler(app, require=("database", "auth", "livekit"))
