"""Bad input at the HTTP edge of livekit-token: always a 4xx envelope, never a 5xx.

Runs against the real function and the real database: a member with a valid
token sends every kind of broken request a client (or an attacker) can send.
"""

from __future__ import annotations

import json
import time

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from shared.errors import STATUS_BY_CODE
from tests import support
from tests.support import Client

LIMIT = 16 * 1024


@pytest.fixture
def client(env):
    from functions.livekit_token.app import app

    return Client(app)


@pytest.fixture(scope="module")
def target(sql):
    return sql.member("founder"), sql.net("vagrant", "vagrant", "scout")


def assert_envelope(reply, status: int | None = None, code: str | None = None) -> dict:
    """A 4xx answer carries exactly {error, message[, details]} with a known code."""
    assert 400 <= reply.status < 500, reply
    if status is not None:
        assert reply.status == status, reply
    assert reply.headers.get("content-type") == "application/json"
    body = reply.json
    assert isinstance(body, dict) and set(body) <= {"error", "message", "details"}, body
    assert STATUS_BY_CODE.get(body["error"]) == reply.status, body
    assert isinstance(body["message"], str) and body["message"], body
    if "details" in body:
        assert isinstance(body["details"], dict) and body["details"], body
    if code is not None:
        assert body["error"] == code, body
    return body


def send(client: Client, target, raw: bytes, content_type: str | None = "application/json", method: str = "POST"):
    member, _ = target
    headers = {"authorization": f"Bearer {member.token()}"}
    if content_type is not None:
        headers["content-type"] = content_type
    return client.request(method, headers=headers, raw=raw)


def test_control_a_well_formed_request_succeeds(client, target):
    _, room = target
    reply = send(client, target, json.dumps({"roomName": room, "participantName": "Ace"}).encode())
    assert reply.status == 200, reply


@pytest.mark.parametrize("raw", [
    b"{", b'{"roomName": }', b"nul", b'{"roomName": "x"} trailing', b"\xff\xfe\x00{", b"{'roomName': 'x'}",
    b'{"roomName": "x",}', b'{"roomName": NaN}', b'{"roomName": Infinity}', b"[" * 5000, b"{\"a\":" * 3000,
    b'{"roomName": "\\u0000"}', b'{"roomName": "net\\u0000x"}', b'{"roomName": "x", "k\\u0000": 1}',
    b'{"roomName": "x", "participantName": "\\ud800"}', b'{"roomName": "\\udfff"}', b'{"roomName": "\x01"}',
], ids=lambda raw: repr(raw[:24]))
def test_malformed_json_is_400(client, target, raw):
    assert_envelope(send(client, target, raw), 400, "BAD_REQUEST")


@pytest.mark.parametrize("raw", [b"", b"   ", b"\n"])
def test_empty_body_is_400(client, target, raw):
    assert_envelope(send(client, target, raw), 400, "BAD_REQUEST")


@pytest.mark.parametrize("body", [[], ["roomName"], "roomName", 42, None, True])
def test_body_that_is_not_an_object_is_400(client, target, body):
    assert_envelope(send(client, target, json.dumps(body).encode()), 400, "BAD_REQUEST")


@pytest.mark.parametrize("body,field", [
    ({"roomName": 123}, "roomName"),
    ({"roomName": None}, "roomName"),
    ({"roomName": ["net"]}, "roomName"),
    ({"roomName": {"code": "net"}}, "roomName"),
    ({"roomName": True}, "roomName"),
    ({"roomName": 1.5}, "roomName"),
    ({"roomName": "net", "participantName": 7}, "participantName"),
    ({"roomName": "net", "participantName": ["Ace"]}, "participantName"),
])
def test_wrong_types_are_400_naming_the_field(client, target, body, field):
    envelope = assert_envelope(send(client, target, json.dumps(body).encode()), 400, "BAD_REQUEST")
    assert field in envelope["details"]["fields"], envelope


@pytest.mark.parametrize("body,field", [
    ({}, "roomName"),
    ({"participantName": "Ace"}, "roomName"),
    ({"room": "net"}, "roomName"),
    ({"roomName": ""}, "roomName"),
    ({"roomName": "   "}, "roomName"),
    ({"roomName": "n" * 129}, "roomName"),
    ({"roomName": "net", "participantName": ""}, "participantName"),
    ({"roomName": "net", "participantName": "p" * 65}, "participantName"),
])
def test_missing_or_out_of_range_fields_are_400_naming_the_field(client, target, body, field):
    envelope = assert_envelope(send(client, target, json.dumps(body).encode()), 400, "BAD_REQUEST")
    assert field in envelope["details"]["fields"], envelope


def test_body_over_16_kib_is_413_and_at_the_limit_is_fine(client, target):
    _, room = target
    body = json.dumps({"roomName": room}).encode()
    at_limit = body + b" " * (LIMIT - len(body))
    assert len(at_limit) == LIMIT
    assert send(client, target, at_limit).status == 200
    assert_envelope(send(client, target, at_limit + b" "), 413, "PAYLOAD_TOO_LARGE")
    assert_envelope(send(client, target, b"{" + b'"x":1,' * 10_000 + b'"roomName":"a"}'), 413)


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH", "HEAD", "TRACE", "CONNECT", "BREW"])
def test_wrong_method_is_405_with_allow(client, target, method):
    reply = send(client, target, b'{"roomName": "x"}', method=method)
    assert_envelope(reply, 405, "METHOD_NOT_ALLOWED")
    assert {m.strip() for m in reply.headers["allow"].split(",")} == {"POST", "OPTIONS"}


def test_wrong_method_is_405_even_without_a_token(client):
    reply = client.request("GET")
    assert_envelope(reply, 405, "METHOD_NOT_ALLOWED")


@pytest.mark.parametrize("content_type", [
    None, "", "text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x", "application/xml", "application/json-patch+json", "json",
    "application/javascript", "application/jsonx",
])
def test_wrong_content_type_is_415(client, target, content_type):
    _, room = target
    reply = send(client, target, json.dumps({"roomName": room}).encode(), content_type=content_type)
    assert_envelope(reply, 415, "UNSUPPORTED_MEDIA_TYPE")


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "Application/JSON", " application/json "])
def test_json_content_type_variants_are_accepted(client, target, content_type):
    _, room = target
    assert send(client, target, json.dumps({"roomName": room}).encode(), content_type=content_type).status == 200


def test_options_preflight_is_204_without_auth_or_body(client):
    reply = client.request("OPTIONS", headers={"origin": "https://app.example", "access-control-request-method": "POST"})
    assert reply.status == 204
    assert reply.raw == b""
    assert {m.strip() for m in reply.headers["allow"].split(",")} == {"POST", "OPTIONS"}


def test_options_preflight_carries_cors_headers_for_allowed_origins(client, env):
    from shared import config

    env.setenv("CORS_ALLOW_ORIGINS", "https://app.example, https://other.example")
    config.get_settings.cache_clear()
    allowed = client.request("OPTIONS", headers={"origin": "https://app.example"})
    assert allowed.status == 204
    assert allowed.headers["access-control-allow-origin"] == "https://app.example"
    assert "authorization" in allowed.headers["access-control-allow-headers"]
    stranger = client.request("OPTIONS", headers={"origin": "https://evil.example"})
    assert stranger.status == 204
    assert "access-control-allow-origin" not in stranger.headers


# --- property: whatever arrives, the answer is never a 5xx --------------------------------

_header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=80)
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
_claim_overrides = st.dictionaries(
    st.sampled_from(["sub", "aud", "role", "iss", "exp", "nbf", "iat"]),
    st.none() | _json_values | st.integers(min_value=int(time.time()) - 10**6, max_value=int(time.time()) + 10**6),
    max_size=3,
)


@st.composite
def authorizations(draw, member_id: str) -> str | None:
    kind = draw(st.sampled_from(["valid"] * 5 + ["none", "text", "bearer-text", "claims", "truncated", "alg"]))
    if kind == "none":
        return None
    if kind == "text":
        return draw(_header_text)
    if kind == "bearer-text":
        return "Bearer " + draw(_header_text)
    token = support.sign_user_token(member_id)
    if kind == "valid":
        return f"Bearer {token}"
    if kind == "claims":
        overrides = draw(_claim_overrides)
        try:
            return "Bearer " + support.sign_user_token(member_id, **overrides)
        except (TypeError, ValueError):
            return f"Bearer {token}"
    if kind == "truncated":
        return "Bearer " + token[: draw(st.integers(0, len(token)))]
    header = json.dumps({"alg": draw(st.sampled_from(["none", "HS256", "RS256", "ES256", "HS512", ""])),
                         "kid": draw(st.text(max_size=8))}).encode()
    import base64

    head = base64.urlsafe_b64encode(header).rstrip(b"=").decode()
    return "Bearer " + head + "." + token.split(".", 1)[1]


@st.composite
def bodies(draw, room: str) -> bytes:
    kind = draw(st.sampled_from(["near-valid"] * 4 + ["binary", "json", "object", "big"]))
    if kind == "binary":
        return draw(st.binary(max_size=256))
    if kind == "json":
        return json.dumps(draw(_json_values)).encode()
    if kind == "object":
        return json.dumps(draw(st.dictionaries(st.sampled_from(["roomName", "participantName", "identity", "role", "x"]),
                                               _json_values, max_size=4))).encode()
    if kind == "near-valid":
        name = draw(st.one_of(st.just(room), st.text(max_size=140), st.just("")))
        body = {"roomName": name}
        if draw(st.booleans()):
            body["participantName"] = draw(st.text(max_size=70))
        raw = json.dumps(body, ensure_ascii=draw(st.booleans())).encode()
        return raw[: draw(st.integers(len(raw) - 3, len(raw)))] if draw(st.booleans()) else raw
    return b'{"roomName": "' + b"x" * draw(st.integers(LIMIT - 20, LIMIT + 20)) + b'"}'


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_arbitrary_requests_never_get_a_5xx(client, target, data):
    member, room = target
    # Weighted towards requests that get past the early checks, so the deeper ones are hit too.
    method = data.draw(st.sampled_from(["POST"] * 10 + ["GET", "PUT", "OPTIONS", "HEAD", "DELETE", "?"]), label="method")
    if method == "?":
        method = data.draw(st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=8), label="any method")
    headers: dict[str, str] = {}
    ctype = data.draw(st.sampled_from(["application/json"] * 6 + ["application/json; charset=utf-8", "text/plain", None, "?"]),
                      label="content-type")
    if ctype == "?":
        ctype = data.draw(_header_text, label="any content-type")
    if ctype is not None:
        headers["content-type"] = ctype
    authorization = data.draw(authorizations(member.id), label="authorization")
    if authorization is not None:
        headers["authorization"] = authorization
    extra = data.draw(st.dictionaries(st.sampled_from(["origin", "x-forwarded-for", "content-length", "accept"]),
                                      _header_text, max_size=2), label="extra headers")
    headers.update(extra)
    raw = data.draw(bodies(room), label="body")

    reply = client.request(method, headers=headers, raw=raw)
    event(f"status {reply.status}")

    assert reply.status < 500, reply
    if reply.status >= 400:
        assert_envelope(reply)
    elif reply.status == 204:
        assert method == "OPTIONS" and reply.raw == b""
    else:
        assert reply.status == 200 and method == "POST", reply
        assert reply.json["identity"] == member.id
