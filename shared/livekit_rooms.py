"""LiveKit's RoomService behind a small synchronous facade: the outcomes, and the
participant calls over Twirp JSON and the standard library.

    rooms = RoomServiceClient.from_settings()      # LIVEKIT_URL/_API_KEY/_API_SECRET
    rooms.participants("net-alpha")                # [ParticipantState(sid, identity, ...)]
    rooms.update_participant("net-alpha", "u1", permission={...}, metadata="...")
    rooms.remove_participant("net-alpha", "u1")    # True if removed, False if already gone

The room calls the scheduled jobs make (ListRooms, ListParticipants in bulk,
DeleteRoom) are `shared.livekit_roomservice.RoomService`, a subclass built on
livekit-api's `LiveKitAPI` (aiohttp and the protobuf stack). Only the two
functions that ship livekit-api import it (the stale-presence reconciler and
the sim-pod expiry), so no other function can reach livekit.api or aiohttp
through this module (tests/unit/test_packaging.py holds every function's
imports, lazy ones included, to its package).

Every outcome maps onto something a caller can act on:
- a value: LiveKit answered;
- `RoomNotFound`: LiveKit answered that the room does not exist: Twirp
  `not_found` (DeleteRoom), or absence from ListRooms (`presence_by_room`).
  ListParticipants alone cannot tell: LiveKit answers an empty list for a
  room it does not know (livekit-server's LocalStore/RedisStore), the same
  as for an empty room;
- `LiveKitUnavailable`: no trustworthy answer (refused connection, timeout, 5xx,
  or a 4xx such as a wrong key pair); act as if nothing is known. `.status` and
  `.code` say which (status 0 for transport failures).
- `DeadlineReached` (`presence_by_room(..., deadline=)` only): the caller's
  time ran out first; the room was not asked about, or its answer was not
  waited for. Leave it for the next run.

The calls HTTP functions make inline (`rooms_now`, `participants`,
`update_participant`, `remove_participant`: member-admin and the webhook's
join check; the access sync and the reconciler's discovery use them too)
speak Twirp's JSON form over the standard library instead, so
livekit.api, aiohttp and protobuf stay off those functions' import path.
The server accepts snake_case or camelCase keys and answers snake_case with
defaults included (twirp v8 as livekit-server configures it); both are read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


class LiveKitError(Exception):
    """Base of the RoomService outcomes that are not a value."""


class RoomNotFound(LiveKitError):
    def __init__(self, room: str):
        super().__init__(f"LiveKit has no room named {room!r}")
        self.room = room


class DeadlineReached(LiveKitError):
    """The caller's deadline came before LiveKit answered about `room`: it was not judged."""

    def __init__(self, room: str):
        super().__init__(f"no answer about {room!r} before the deadline")
        self.room = room


class LiveKitUnavailable(LiveKitError):
    def __init__(self, message: str, *, status: int = 0, code: str = "unavailable"):
        super().__init__(message)
        self.status = status
        self.code = code


@dataclass(frozen=True)
class Participant:
    sid: str
    identity: str
    name: str = ""
    state: str = ""
    joined_at: int = 0  # epoch seconds, as LiveKit reports it


@dataclass(frozen=True)
class ParticipantState:
    """A participant as ListParticipants reports it, with what decides their rights."""

    sid: str
    identity: str
    metadata: str = ""
    # ParticipantPermission in camelCase: canSubscribe, canPublish, canPublishData, canPublishSources (names)
    permission: dict[str, Any] = field(default_factory=dict)
    name: str = ""
    joined_at_ms: int = 0  # 0: LiveKit did not say

    def as_event_participant(self) -> dict[str, Any]:
        """The participant as a webhook event carries it (what livekit_presence_adopt records)."""
        info: dict[str, Any] = {"sid": self.sid, "identity": self.identity, "name": self.name,
                                "metadata": self.metadata, "permission": dict(self.permission)}
        if self.joined_at_ms:
            info["joinedAtMs"] = str(self.joined_at_ms)
        return info


@dataclass(frozen=True)
class RoomInfo:
    sid: str
    name: str
    num_participants: int = 0
    creation_time: int = 0


class RoomServiceClient:
    """Synchronous RoomService calls with one key pair against one LiveKit URL."""

    def __init__(self, url: str, api_key: str, api_secret: str, *, timeout: float = 5.0):
        if not (url and api_key and api_secret):
            raise ValueError("url, api_key and api_secret are required")
        self.url = url
        self.api_key = api_key
        self.api_secret = api_secret
        self.timeout = timeout

    @classmethod
    def from_settings(cls) -> "RoomServiceClient":
        from shared.config import get_settings

        s = get_settings().require("livekit")
        assert s.livekit_server_url and s.LIVEKIT_API_KEY and s.LIVEKIT_API_SECRET
        return cls(s.livekit_server_url or "", s.LIVEKIT_API_KEY, s.LIVEKIT_API_SECRET.get_secret_value(),
                   timeout=s.LIVEKIT_API_TIMEOUT_SECONDS)

    # -- participant calls over Twirp JSON (no livekit.api) ---------------------

    def rooms_now(self, *, timeout: float | None = None) -> list[RoomInfo]:
        """Every room LiveKit has now (ListRooms over Twirp JSON)."""
        answer = self._twirp_json("ListRooms", "", {}, timeout, video={"roomList": True})
        return [RoomInfo(str(r.get("sid") or ""), str(r.get("name") or ""),
                         _int(r.get("num_participants", r.get("numParticipants"))),
                         _int(r.get("creation_time", r.get("creationTime"))))
                for r in answer.get("rooms") or () if r.get("name")]

    def participants(self, room: str, *, timeout: float | None = None) -> list[ParticipantState]:
        """Who LiveKit has in `room` now, with permission and metadata ([] for an unknown room)."""
        try:
            answer = self._twirp_json("ListParticipants", room, {"room": room}, timeout)
        except RoomNotFound:
            return []
        return [ParticipantState(str(p.get("sid") or ""), str(p.get("identity") or ""), str(p.get("metadata") or ""),
                                 _permission(p.get("permission") or {}), str(p.get("name") or ""),
                                 _int(p.get("joined_at_ms", p.get("joinedAtMs")))
                                 or _int(p.get("joined_at", p.get("joinedAt"))) * 1000)
                for p in answer.get("participants") or ()]

    def update_participant(self, room: str, identity: str, *, permission: dict[str, Any], metadata: str,
                           timeout: float | None = None) -> bool:
        """Set a connected participant's permission (whole) and metadata in place.
        False if LiveKit no longer has them (Twirp not_found)."""
        body = {"room": room, "identity": identity, "metadata": metadata, "permission": {
            "can_subscribe": bool(permission.get("canSubscribe")),
            "can_publish": bool(permission.get("canPublish")),
            "can_publish_data": bool(permission.get("canPublishData")),
            "can_publish_sources": [s.upper() for s in permission.get("canPublishSources") or ()],
            "can_update_metadata": False,
        }}
        try:
            self._twirp_json("UpdateParticipant", room, body, timeout)
        except RoomNotFound:
            return False
        return True

    def remove_participant(self, room: str, identity: str, *, timeout: float | None = None) -> bool:
        """Disconnect a participant. Idempotent: False if LiveKit no longer has them."""
        try:
            self._twirp_json("RemoveParticipant", room, {"room": room, "identity": identity}, timeout)
        except RoomNotFound:
            return False
        return True

    def _twirp_json(self, method: str, room: str, body: dict[str, Any], timeout: float | None,
                    video: dict[str, Any] | None = None) -> dict[str, Any]:
        import socket
        import urllib.error
        import urllib.request

        from shared.livekit_tokens import mint_service_token

        token = mint_service_token(api_key=self.api_key, api_secret=self.api_secret,
                                   video=video or {"roomAdmin": True, "room": room}, ttl_seconds=300)
        base = self.url.replace("wss://", "https://", 1).replace("ws://", "http://", 1)
        request = urllib.request.Request(
            f"{base}/twirp/livekit.RoomService/{method}", data=json.dumps(body).encode(), method="POST",
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        limit = max(0.05, min(self.timeout, timeout if timeout is not None else self.timeout))
        try:
            with _NO_PROXY.open(request, timeout=limit) as reply:
                return json.loads(reply.read(_MAX_REPLY_BYTES) or b"{}")
        except urllib.error.HTTPError as e:
            try:
                code = str(json.loads(e.read(4096) or b"{}").get("code") or "unknown")
            except ValueError:
                code = "unknown"
            if code == "not_found":
                raise RoomNotFound(room) from None
            raise LiveKitUnavailable(f"LiveKit answered {e.code} {code}", status=e.code, code=code) from None
        except (urllib.error.URLError, socket.timeout, TimeoutError, OSError, ValueError) as e:
            raise LiveKitUnavailable(f"LiveKit unreachable: {type(e).__name__}") from None

def _int(value: Any) -> int:
    """An int64 from Twirp JSON (protojson writes them as strings); 0 when absent or not a number."""
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _permission(raw: dict[str, Any]) -> dict[str, Any]:
    """ParticipantPermission from Twirp JSON (either key style) in camelCase; absent means false."""
    def get(camel: str, snake: str) -> Any:
        return raw.get(camel, raw.get(snake))

    sources = get("canPublishSources", "can_publish_sources") or []
    names = {0: "UNKNOWN", 1: "CAMERA", 2: "MICROPHONE", 3: "SCREEN_SHARE", 4: "SCREEN_SHARE_AUDIO"}
    return {
        "canSubscribe": bool(get("canSubscribe", "can_subscribe")),
        "canPublish": bool(get("canPublish", "can_publish")),
        "canPublishData": bool(get("canPublishData", "can_publish_data")),
        "canPublishSources": sorted(names.get(s, str(s)) if isinstance(s, int) else str(s).upper() for s in sources),
    }


# A busy room's ListParticipants answer (defaults included, every track listed, metadata up to
# LiveKit's 64 kB each) runs past a megabyte with a few hundred participants; cut short, it
# would not parse and the job would wait as if LiveKit were down.
_MAX_REPLY_BYTES = 64 << 20


class _NoProxy:
    """An opener that ignores *_proxy environment variables (LiveKit is reached directly)."""

    _opener: Any = None

    def open(self, request: Any, timeout: float) -> Any:
        import urllib.request

        if self._opener is None:
            self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        return self._opener.open(request, timeout=timeout)


_NO_PROXY = _NoProxy()
