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

from shared import text
from shared.ranks import VoiceGrants

# A voice app publishes the microphone and nothing else. LiveKit spells track
# sources in lower case (protocol auth/grants.go); once the list is set, only
# the sources in it may be published (no camera, no screen share).
VOICE_SOURCES = ("microphone",)

# LiveKit hands every connected participant a fresh token every 5 minutes,
# valid for 10 (livekit-server roommanager.go), and accepts a token up to a
# minute past its `exp` (go-jose's default leeway).
LIVEKIT_REFRESHED_TOKEN_SECONDS = 600
LIVEKIT_EXPIRY_LEEWAY_SECONDS = 60

# Sim-pod tokens are only for joining now: a member who drops and comes back
# asks livekit-token again, which refuses once the pod has ended.
SIM_POD_TOKEN_TTL_SECONDS = 300
# How long LiveKit keeps an empty pod room open (emptyTimeout: nobody joined
# yet; departureTimeout: everyone left). LiveKit's 20 s departure default would
# let one dropped connection end a two-hour pod through room_finished.
SIM_POD_ROOM_GRACE_SECONDS = 300
# After a pod ends, the longest any token could still re-create its room.
SIM_POD_ROOM_RECHECK_SECONDS = (max(SIM_POD_TOKEN_TTL_SECONDS, LIVEKIT_REFRESHED_TOKEN_SECONDS)
                                + LIVEKIT_EXPIRY_LEEWAY_SECONDS)


def sim_pod_token_ttl(configured_ttl: int, seconds_left: int) -> int:
    """A pod token never outlives the pod, nor SIM_POD_TOKEN_TTL_SECONDS."""
    return max(1, min(configured_ttl, seconds_left, SIM_POD_TOKEN_TTL_SECONDS))


def sim_pod_room_config() -> dict[str, int]:
    """LiveKit's RoomConfiguration (JSON names), applied when a join creates the pod's room."""
    return {"emptyTimeout": SIM_POD_ROOM_GRACE_SECONDS, "departureTimeout": SIM_POD_ROOM_GRACE_SECONDS}


def display_name(profile: dict[str, Any], user_id: str) -> str:
    """The name other participants see: the member's callsign, never a string the client sent.

    A callsign that breaks the text rules (one from before them, with a
    control or bidi character) or that is grandfathered (it clashes with an
    older member's, so it would show as theirs) is not shown: the member
    shows as their rank and the start of their id, which is their LiveKit
    identity anyway, and which no callsign may be (the database refuses it
    as profiles_callsign_reserved).
    """
    raw = profile.get("callsign") or ""
    if raw and not profile.get("callsign_grandfathered") and text.problem(raw) is None:
        return text.shown_callsign(raw)
    return f"{str(profile.get('rank') or 'member').capitalize()} {user_id[:8]}"


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
    room_config: dict[str, Any] | None = None,
    now: int | None = None,
    publish_after_join_check: bool = False,
) -> tuple[str, int]:
    """A participant token for one room; returns (jwt, expires_at_epoch).

    `publish_after_join_check` (strict mode, LIVEKIT_PUBLISH_AFTER_JOIN_CHECK): the token carries
    no publish or data right whatever `grants` says; the webhook's join check grants them in place
    (RoomService UpdateParticipant) once the member's rights are read from the database."""
    issued = int(now if now is not None else time.time())
    expires = issued + ttl_seconds
    if publish_after_join_check:
        grants = VoiceGrants(grants.can_join, grants.can_subscribe, False, False)
    # LiveKit defaults canPublish/canPublishData/canSubscribe to true when
    # absent, so every grant is written explicitly.
    video: dict[str, Any] = {
        "roomJoin": grants.can_join,
        "room": room,
        "canSubscribe": grants.can_subscribe,
        "canPublish": grants.can_publish,
        "canPublishData": grants.can_publish_data,
        "canUpdateOwnMetadata": False,
    }
    if grants.can_publish:
        video["canPublishSources"] = list(VOICE_SOURCES)
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
    if room_config:
        claims["roomConfig"] = room_config
    return jwt.encode(claims, api_secret, algorithm="HS256"), expires


def mint_service_token(*, api_key: str, api_secret: str, video: dict[str, Any], ttl_seconds: int = 600) -> str:
    """A server-to-server token for the RoomService API (e.g. roomList, roomAdmin)."""
    now = int(time.time())
    claims = {"iss": api_key, "sub": api_key, "nbf": now, "exp": now + ttl_seconds, "video": video}
    return jwt.encode(claims, api_secret, algorithm="HS256")
