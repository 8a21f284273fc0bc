"""A loopback fake of LiveKit's RoomService, speaking Twirp as livekit-api does.

No LiveKit server can run here, so tests talk to this peer through the real
client (`shared.livekit_roomservice`, i.e. livekit-api's LiveKitAPI). It checks what
a LiveKit server checks and nothing is stubbed on the client side:

- `POST /twirp/livekit.RoomService/<Method>` with `application/protobuf`
  (what livekit-api sends) or `application/json` (what curl users send);
  requests are decoded with livekit.protocol's message classes;
- `Authorization: Bearer <jwt>` verified with the API secret (HS256, iss = API
  key, exp required), answered as livekit-server v1.9.11 answers (checked side
  by side in tests/livekit_server/test_twirp_parity.py): a token that does not
  verify -> 401 with a plain-text body `invalid token: ...` from the server's
  auth middleware (not a Twirp error: livekit-api reports code `unknown`); no
  header -> 401 Twirp `unauthenticated`; a missing grant -> 401 Twirp
  `unauthenticated` "permissions denied" (not 403): ListRooms needs `roomList`,
  CreateRoom/DeleteRoom need `roomCreate`, participant methods need
  `roomAdmin` with `room` equal to the request's room;
- unknown rooms as livekit-server answers them (pkg/service/roomservice.go
  with its LocalStore/RedisStore): ListParticipants -> an empty list, exactly
  as for an empty room (only ListRooms tells a room is gone); DeleteRoom ->
  404 `not_found` ("requested room does not exist"); RemoveParticipant ->
  404 `not_found` ("participant not found", from the room store);
  UpdateParticipant of an identity the room does not hold -> 404 `not_found`
  ("participant does not exist");
- UpdateParticipant as the server applies it (pkg/service/roommanager.go):
  a non-empty `metadata` replaces the metadata, a present `permission`
  replaces the whole permission (SetPermission); the answer is the
  participant. `participant_updates` records each change in order;
- JSON answers as twirp v8 writes them for livekit-server: proto field names
  (snake_case), defaults included, enums by name.

Usage:

    with LiveKitTwirpFake(KEY, SECRET) as lk:        # listens on 127.0.0.1:<free port>
        lk.add_room("net-alpha")
        lk.add_participant("net-alpha", "user-1", sid="PA_1")
        env.setenv("LIVEKIT_URL", lk.url)
        ...                                           # code under test
        assert [c.method for c in lk.calls] == ["ListParticipants"]
        lk.set_down("refuse")                         # or "503"; lk.set_down(None) to recover

The server stops on `stop()`/context exit, and by itself after `lifetime`
seconds so a failed test never leaves a listener behind.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt

PREFIX = "/twirp/livekit.RoomService/"


@dataclass
class FakeParticipant:
    sid: str
    identity: str
    name: str = ""
    metadata: str = ""
    joined_at: int = field(default_factory=lambda: int(time.time()))
    # ParticipantPermission as protobuf field names, e.g. {"can_publish": True,
    # "can_publish_sources": ["MICROPHONE"]}; absent fields are false
    permission: dict[str, Any] = field(default_factory=dict)


@dataclass
class FakeRoom:
    name: str
    sid: str
    metadata: str = ""
    creation_time: int = field(default_factory=lambda: int(time.time()))
    participants: dict[str, FakeParticipant] = field(default_factory=dict)  # by sid


@dataclass(frozen=True)
class Call:
    method: str
    room: str | None
    status: int
    grants: dict[str, Any]
    content_type: str


class _TwirpError(Exception):
    def __init__(self, status: int, code: str, msg: str):
        super().__init__(msg)
        self.status, self.code, self.msg = status, code, msg


class _PlainError(Exception):
    """An answer from before the Twirp handler (the auth middleware): status and a text body."""

    def __init__(self, status: int, text: str):
        super().__init__(text)
        self.status, self.text = status, text


class LiveKitTwirpFake:
    """In-memory rooms and participants behind a Twirp RoomService endpoint."""

    def __init__(self, api_key: str, api_secret: str, *, lifetime: float = 120.0, port: int | None = None):
        self.api_key = api_key
        self.api_secret = api_secret
        self.lifetime = lifetime
        self.port = port or _free_port()
        self.rooms: dict[str, FakeRoom] = {}
        self.calls: list[Call] = []
        # (room, identity, permission dict, metadata) per applied UpdateParticipant
        self.participant_updates: list[tuple[str, str, dict[str, Any], str]] = []
        self.down: str | None = None  # None, "refuse" (connection refused) or "503"
        self.delay: float = 0.0       # seconds before answering (timeouts)
        self._lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._timer: threading.Timer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- the model the test arranges -------------------------------------------

    def add_room(self, name: str, sid: str | None = None, metadata: str = "") -> FakeRoom:
        with self._lock:
            room = self.rooms.get(name) or FakeRoom(name, sid or f"RM_{uuid.uuid4().hex[:12]}", metadata)
            self.rooms[name] = room
            return room

    def remove_room(self, name: str) -> None:
        with self._lock:
            self.rooms.pop(name, None)

    def add_participant(self, room: str, identity: str, sid: str | None = None, **fields: Any) -> FakeParticipant:
        with self._lock:
            r = self.add_room(room)
            p = FakeParticipant(sid or f"PA_{uuid.uuid4().hex[:12]}", identity, **fields)
            r.participants[p.sid] = p
            return p

    def remove_participant(self, room: str, sid: str) -> None:
        with self._lock:
            if room in self.rooms:
                self.rooms[room].participants.pop(sid, None)

    def participant(self, room: str, identity: str) -> FakeParticipant | None:
        with self._lock:
            r = self.rooms.get(room)
            return next((p for p in (r.participants.values() if r else ()) if p.identity == identity), None)

    def calls_to(self, method: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.method == method]

    # -- availability ------------------------------------------------------------

    def set_down(self, mode: str | None) -> None:
        """"refuse": stop listening (connection refused); "503": answer unavailable; None: up."""
        if mode not in (None, "refuse", "503"):
            raise ValueError(mode)
        self.down = mode
        if mode == "refuse":
            self._close_listener()
        elif self._server is None:
            self._listen()

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> "LiveKitTwirpFake":
        self._listen()
        self._timer = threading.Timer(self.lifetime, self.stop)
        self._timer.daemon = True
        self._timer.start()
        return self

    def stop(self) -> None:
        if self._timer:
            self._timer.cancel()
            self._timer = None
        self._close_listener()

    def __enter__(self) -> "LiveKitTwirpFake":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _listen(self) -> None:
        fake = self

        class Handler(_Handler):
            peer = fake

        server = _QuietServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def _close_listener(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    # -- the service -------------------------------------------------------------

    def _authorize(self, header: str | None) -> dict[str, Any]:
        if not header or not header.startswith("Bearer "):
            raise _TwirpError(401, "unauthenticated", "authorization header missing")
        try:
            claims = jwt.decode(header[7:], self.api_secret, algorithms=["HS256"], issuer=self.api_key,
                                options={"require": ["exp", "iss"]}, leeway=60)
        except jwt.PyJWTError as e:
            raise _PlainError(401, f"invalid token: {header[7:]}, error: {type(e).__name__}") from None
        return claims.get("video") or {}

    def handle(self, method: str, content_type: str, body: bytes, authorization: str | None) -> tuple[int, str, bytes]:
        from google.protobuf import json_format
        from livekit.protocol import models, room as proto

        specs = {
            "ListRooms": (proto.ListRoomsRequest, "roomList"),
            "CreateRoom": (proto.CreateRoomRequest, "roomCreate"),
            "DeleteRoom": (proto.DeleteRoomRequest, "roomCreate"),
            "ListParticipants": (proto.ListParticipantsRequest, "roomAdmin"),
            "RemoveParticipant": (proto.RoomParticipantIdentity, "roomAdmin"),
            "UpdateParticipant": (proto.UpdateParticipantRequest, "roomAdmin"),
        }
        grants: dict[str, Any] = {}
        room_name: str | None = None
        status = 200
        try:
            if method not in specs:
                raise _TwirpError(404, "bad_route", f"no handler for {method}")
            request_class, needed = specs[method]
            is_json = content_type.startswith("application/json")
            if not (is_json or content_type.startswith("application/protobuf")):
                raise _TwirpError(400, "malformed", f"unexpected content type {content_type!r}")
            try:
                req = (json_format.Parse(body or b"{}", request_class(), ignore_unknown_fields=True)
                       if is_json else request_class.FromString(body))
            except Exception:
                raise _TwirpError(400, "malformed", "the request body could not be decoded") from None
            room_name = getattr(req, "room", None) or (req.name if method == "CreateRoom" else None)
            grants = self._authorize(authorization)
            if not grants.get(needed):
                raise _TwirpError(401, "unauthenticated", "permissions denied")
            if needed == "roomAdmin" and grants.get("room") != room_name:
                raise _TwirpError(401, "unauthenticated", "permissions denied")

            with self._lock:
                reply = self._dispatch(method, req, proto, models)
            out = (json_format.MessageToJson(reply, preserving_proto_field_name=True,
                                             always_print_fields_with_no_presence=True).encode()
                   if is_json else reply.SerializeToString())
            ctype = "application/json" if is_json else "application/protobuf"
            return 200, ctype, out
        except _TwirpError as e:
            status = e.status
            return e.status, "application/json", json.dumps({"code": e.code, "msg": e.msg}).encode()
        except _PlainError as e:
            status = e.status
            return e.status, "text/plain; charset=utf-8", (e.text + "\n").encode()
        finally:
            with self._lock:
                self.calls.append(Call(method, room_name, status, dict(grants), content_type))

    def _dispatch(self, method: str, req: Any, proto: Any, models: Any) -> Any:
        if method == "ListRooms":
            names = set(req.names)
            return proto.ListRoomsResponse(rooms=[
                self._room_message(r, models) for r in self.rooms.values() if not names or r.name in names])
        if method == "CreateRoom":
            return self._room_message(self.add_room(req.name, metadata=req.metadata), models)
        room = self.rooms.get(req.room)
        if method == "ListParticipants":
            # the store keeps participants per room name: none kept, an empty answer
            return proto.ListParticipantsResponse(participants=[
                self._participant_message(p, models) for p in (room.participants.values() if room else ())])
        if method == "DeleteRoom":
            if room is None:
                raise _TwirpError(404, "not_found", "requested room does not exist")
            del self.rooms[req.room]
            return proto.DeleteRoomResponse()
        if method == "UpdateParticipant":
            from google.protobuf import json_format

            p = next((p for p in (room.participants.values() if room else ()) if p.identity == req.identity), None)
            if p is None:
                raise _TwirpError(404, "not_found", "participant does not exist")
            if req.metadata:
                p.metadata = req.metadata
            if req.HasField("permission"):
                p.permission = json_format.MessageToDict(req.permission, preserving_proto_field_name=True)
            self.participant_updates.append((req.room, req.identity, dict(p.permission), p.metadata))
            return self._participant_message(p, models)
        # RemoveParticipant
        for sid, p in list(room.participants.items() if room else ()):
            if p.identity == req.identity:
                del room.participants[sid]
                return proto.RemoveParticipantResponse()
        raise _TwirpError(404, "not_found", "participant not found")

    @staticmethod
    def _participant_message(p: FakeParticipant, models: Any) -> Any:
        from google.protobuf import json_format

        info = models.ParticipantInfo(sid=p.sid, identity=p.identity, name=p.name, metadata=p.metadata,
                                      joined_at=p.joined_at, state=models.ParticipantInfo.State.ACTIVE)
        json_format.ParseDict(p.permission, info.permission)
        return info

    @staticmethod
    def _room_message(r: FakeRoom, models: Any) -> Any:
        return models.Room(sid=r.sid, name=r.name, metadata=r.metadata, creation_time=r.creation_time,
                           num_participants=len(r.participants))


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that timed out and hung up is part of the tests, not an error


class _Handler(BaseHTTPRequestHandler):
    peer: LiveKitTwirpFake
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:  # keep test output clean
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.peer.delay:
            time.sleep(self.peer.delay)
        if self.peer.down == "503":
            self._reply(503, "application/json", json.dumps({"code": "unavailable", "msg": "down"}).encode())
            return
        if not self.path.startswith(PREFIX):
            self._reply(404, "application/json", json.dumps({"code": "bad_route", "msg": self.path}).encode())
            return
        status, ctype, out = self.peer.handle(self.path[len(PREFIX):], self.headers.get("content-type") or "",
                                              body, self.headers.get("authorization"))
        self._reply(status, ctype, out)

    def _reply(self, status: int, ctype: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
