"""Bad input at the HTTP edge of academy-request and academy-accept: a 4xx envelope, never a 5xx."""

from __future__ import annotations

import json
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.errors import STATUS_BY_CODE
from tests import support
from tests.support import Client

APPS = {"academy-request": ("functions.academy.request", "skillId"),
        "academy-accept": ("functions.academy.accept", "requestId")}


@pytest.fixture(params=sorted(APPS))
def endpoint(request, env):
    import importlib

    module, field = APPS[request.param]
    return Client(importlib.import_module(module).app), field


@pytest.fixture(scope="module")
def member(sql):
    return sql.member("voyager")


def assert_envelope(reply, status: int | None = None) -> None:
    assert 400 <= reply.status < 500, reply
    body = reply.json
    assert set(body) <= {"error", "message", "details"} and STATUS_BY_CODE[body["error"]] == reply.status, body
    if status is not None:
        assert reply.status == status, reply


@pytest.mark.parametrize("raw", [b"{", b"[]", b"null", b'"x"', b"{'skillId': 1}", b'{"skillId": NaN}',
                                 b'{"requestId": "\\u0000"}', b"[" * 3000, b""])
def test_malformed_json_is_400(endpoint, member, raw):
    client, _ = endpoint
    assert_envelope(client.request("POST", headers=member.auth(), raw=raw), 400)


def test_wrong_content_type_is_415_and_oversize_413(endpoint, member):
    client, field = endpoint
    headers = {**member.auth(), "content-type": "text/plain"}
    assert_envelope(client.request("POST", headers=headers, raw=json.dumps({field: str(uuid.uuid4())}).encode()), 415)
    big = json.dumps({field: str(uuid.uuid4()), "pad": "x" * 20000}).encode()
    assert_envelope(client.request("POST", headers=member.auth(), raw=big), 413)


@pytest.mark.parametrize("headers", [{}, {"authorization": "Bearer nope"}, {"authorization": "Basic abc"}])
def test_missing_or_hostile_token_is_401(endpoint, headers):
    client, field = endpoint
    reply = client.request("POST", headers={**headers, "content-type": "application/json"},
                           raw=json.dumps({field: str(uuid.uuid4())}).encode())
    assert_envelope(reply, 401)


def test_a_token_signed_with_another_key_is_401(endpoint, member):
    client, field = endpoint
    token = support.sign_user_token(member.id, secret="not-the-project-secret-but-long-enough-0123456789")
    reply = client.post({field: str(uuid.uuid4())}, {"authorization": f"Bearer {token}",
                                                     "content-type": "application/json"})
    assert_envelope(reply, 401)


def test_methods(endpoint, member):
    client, _ = endpoint
    assert_envelope(client.request("GET", headers=member.auth()), 405)
    assert client.request("OPTIONS").status == 204


_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40) | st.uuids().map(str),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=_values, extra=st.dictionaries(st.text(max_size=10), _values, max_size=3), wrap=st.booleans())
def test_bad_input_never_yields_a_5xx(endpoint, member, value, extra, wrap):
    client, field = endpoint
    body = {**extra, field: value} if wrap else value
    reply = client.request("POST", headers=member.auth(), raw=json.dumps(body).encode())
    assert reply.status < 500, reply
    if reply.status >= 400:
        assert_envelope(reply)
