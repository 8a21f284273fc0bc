"""shared.livekit_webhook: our PyJWT check agrees with livekit-api's WebhookReceiver."""

from __future__ import annotations

import base64
import datetime
import hashlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from livekit import api

from shared.livekit_webhook import InvalidSignature, MalformedEvent, parse_event, verify_signature

KEY = "APIunitkey"
SECRET = "unit-livekit-secret-0123456789abcdef0123456789"


def livekit_token(body: bytes, *, key=KEY, secret=SECRET, ttl=datetime.timedelta(minutes=5)) -> str:
    digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
    return api.AccessToken(key, secret).with_sha256(digest).with_ttl(ttl).to_jwt()


def verify(body: bytes, header: str | None):
    return verify_signature(body, header, api_key=KEY, api_secret=SECRET)


def livekit_accepts(body: bytes, token: str) -> bool:
    receiver = api.WebhookReceiver(api.TokenVerifier(KEY, SECRET))
    try:
        receiver.receive(body.decode(), token)
        return True
    except Exception:
        return False


BODY = json.dumps({"event": "room_started", "id": "EV_1", "room": {"name": "r", "sid": "RM_1"}}).encode()


def test_livekit_signed_body_verifies_like_livekit_api_says():
    token = livekit_token(BODY)
    assert livekit_accepts(BODY, token)
    claims = verify(BODY, token)
    assert claims["iss"] == KEY


def test_bearer_prefix_and_whitespace_are_tolerated():
    token = livekit_token(BODY)
    verify(BODY, f"Bearer {token}")
    verify(BODY, f"  bearer {token} ")


@pytest.mark.parametrize("header", [None, "", "Bearer ", "Basic abc"])
def test_missing_or_foreign_authorization_is_rejected(header):
    with pytest.raises(InvalidSignature):
        verify(BODY, header)


@pytest.mark.parametrize("case", ["tampered", "reserialized", "expired", "wrong_secret", "wrong_key"])
def test_rejections_agree_with_livekit_api(case):
    body, token = BODY, livekit_token(BODY)
    if case == "tampered":
        body = BODY.replace(b"RM_1", b"RM_2")
    elif case == "reserialized":
        body = json.dumps(json.loads(BODY), indent=1).encode()
    elif case == "expired":
        token = livekit_token(BODY, ttl=datetime.timedelta(minutes=-3))
    elif case == "wrong_secret":
        token = livekit_token(BODY, secret="x" * 40)
    elif case == "wrong_key":
        token = livekit_token(BODY, key="APIother")
    assert not livekit_accepts(body, token)
    with pytest.raises(InvalidSignature):
        verify(body, token)


def test_token_within_a_minute_of_expiry_skew_is_accepted_like_livekit():
    token = livekit_token(BODY, ttl=datetime.timedelta(seconds=-30))
    assert livekit_accepts(BODY, token)
    verify(BODY, token)


@settings(max_examples=200, deadline=None)
@given(body=st.binary(max_size=400))
def test_parse_event_only_ever_raises_malformed(body):
    try:
        event, text = parse_event(body)
    except MalformedEvent:
        return
    assert text == body.decode("utf-8")
    assert event.event


@settings(max_examples=100, deadline=None)
@given(payload=st.dictionaries(st.sampled_from(["event", "id", "createdAt", "room", "participant", "egressInfo"]),
                               st.none() | st.integers() | st.text(max_size=10) | st.dictionaries(
                                   st.sampled_from(["name", "sid", "identity", "egressId"]),
                                   st.text(max_size=5) | st.integers(), max_size=3), max_size=6))
def test_parse_event_on_event_shaped_json_only_raises_malformed(payload):
    try:
        parse_event(json.dumps(payload).encode())
    except MalformedEvent:
        pass
