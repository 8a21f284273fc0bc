"""LiveKit access tokens, minted with PyJWT.

`livekit-api`'s AccessToken produces the same claims, but importing
`livekit.api` pulls in aiohttp and the protobuf stack; the token endpoint
only needs an HS256 JWT. Tests check every token we mint with livekit-api's
own TokenVerifier.
"""

from __future__ import annotations

import json
import time
from typing import Any

import jwt

from shared.ranks import VoiceGrants


def mint_participant_token(
    *,
    api_key: str,
    api_secret: str,
    identity: str,
    room: str,
    grants: VoiceGrants,
    ttl_seconds: int,
    name: str | None = None,
    metadata: dict[str, Any] | None = None,
    now: int | None = None,
) -> tuple[str, int]:
    """A participant token for one room; returns (jwt, expires_at_epoch)."""
    issued = int(now if now is not None else time.time())
    expires = issued + ttl_seconds
    # LiveKit defaults canPublish/canPublishData/canSubscribe to true when
    # absent, so every grant is written explicitly.
    video = {
        "roomJoin": grants.can_join,
        "room": room,
        "canSubscribe": grants.can_subscribe,
        "canPublish": grants.can_publish,
        "canPublishData": grants.can_publish_data,
        "canUpdateOwnMetadata": False,
    }
    claims: dict[str, Any] = {
        "iss": api_key,
        "sub": identity,
        "nbf": issued,
        "exp": expires,
        "video": video,
    }
    if name:
        claims["name"] = name
    if metadata is not None:
        claims["metadata"] = json.dumps(metadata, separators=(",", ":"))
    return jwt.encode(claims, api_secret, algorithm="HS256"), expires


def mint_service_token(*, api_key: str, api_secret: str, video: dict[str, Any], ttl_seconds: int = 600) -> str:
    """A server-to-server token for the RoomService API (e.g. roomList, roomAdmin)."""
    now = int(time.time())
    claims = {"iss": api_key, "sub": api_key, "nbf": now, "exp": now + ttl_seconds, "video": video}
    return jwt.encode(claims, api_secret, algorithm="HS256")
