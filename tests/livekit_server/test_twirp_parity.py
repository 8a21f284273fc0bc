"""tests/peers/livekit_twirp.py answers RoomService exactly as the real livekit-server does.

The same requests (JSON Twirp, tokens we sign) go to the real server and to the fake; each must
answer with the same status and Twirp code, and the same rooms and participants.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid

import jwt
import pytest

from tests import support
from tests.livekit_server.clients import joined
from tests.peers.livekit_twirp import LiveKitTwirpFake


def token(secret: str = support.LIVEKIT_SECRET, **video) -> str:
    now = int(time.time())
    return jwt.encode({"iss": support.LIVEKIT_KEY, "nbf": now - 5, "exp": now + 600, "video": video}, secret,
                      algorithm="HS256")


def twirp(base: str, method: str, body: dict, bearer: str | None) -> tuple[int, str | None, dict]:
    headers = {"Content-Type": "application/json"}
    if bearer is not None:
        headers["Authorization"] = f"Bearer {bearer}"
    req = urllib.request.Request(f"{base}/twirp/livekit.RoomService/{method}", data=json.dumps(body).encode(),
                                 headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, None, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            payload = json.loads(raw or b"{}")
        except ValueError:  # not a Twirp error body (the server's plain-text 401)
            payload = {"text": raw.decode(errors="replace")[:80]}
        return e.code, payload.get("code"), payload


def shape(answer: tuple[int, str | None, dict]) -> tuple:
    """What callers act on: status, Twirp code, and the names listed (rooms or identities)."""
    status, code, body = answer
    if "text" in body:
        code = "text: " + body["text"].split(":")[0]
    listed = sorted([r["name"] for r in body.get("rooms", [])] + [p["identity"] for p in body.get("participants", [])])
    return status, code, listed


def test_the_fake_answers_like_the_server(livekit, lk_call):
    room, gone = f"parity-{uuid.uuid4().hex[:8]}", f"gone-{uuid.uuid4().hex[:8]}"
    member = token(roomJoin=True, room=room)
    cases = [
        ("ListRooms", {"names": [room]}, token(roomList=True)),
        ("ListRooms", {"names": [gone]}, token(roomList=True)),
        ("ListRooms", {"names": [room]}, token("another-secret-" + "x" * 40, roomList=True)),
        ("ListRooms", {"names": [room]}, None),
        ("ListRooms", {"names": [room]}, token(roomJoin=True, room=room)),
        ("ListParticipants", {"room": room}, token(roomAdmin=True, room=room)),
        ("ListParticipants", {"room": gone}, token(roomAdmin=True, room=gone)),
        ("ListParticipants", {"room": room}, token(roomAdmin=True, room=gone)),
        ("ListParticipants", {"room": room}, token(roomList=True)),
        ("RemoveParticipant", {"room": room, "identity": "nobody"}, token(roomAdmin=True, room=room)),
        ("RemoveParticipant", {"room": gone, "identity": "nobody"}, token(roomAdmin=True, room=gone)),
        ("DeleteRoom", {"room": gone}, token(roomCreate=True)),
        ("DeleteRoom", {"room": gone}, token(roomAdmin=True, room=gone)),
    ]

    async def real_answers():
        async with joined(livekit.url, _member_token(room)):
            return [shape(twirp(livekit.http_url, m, b, t)) for m, b, t in cases]

    real = lk_call(real_answers())
    with LiveKitTwirpFake(support.LIVEKIT_KEY, support.LIVEKIT_SECRET) as fake:
        fake.add_participant(room, "member-1")
        faked = [shape(twirp(fake.url, m, b, t)) for m, b, t in cases]
    differences = [(m, b, r, f) for (m, b, _), r, f in zip(cases, real, faked) if r != f]
    assert differences == [], "\n".join(json.dumps(d) for d in differences)
    assert member  # the joining member's own token is not a RoomService token


def _member_token(room: str) -> str:
    from livekit import api

    return (api.AccessToken(support.LIVEKIT_KEY, support.LIVEKIT_SECRET).with_identity("member-1")
            .with_grants(api.VideoGrants(room_join=True, room=room)).to_jwt())
