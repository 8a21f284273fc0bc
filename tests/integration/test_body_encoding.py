"""JSON bodies are UTF-8 only: other encodings get a 400 envelope, never a 500."""

from __future__ import annotations

import pytest

from tests.support import Client

BODIES = {
    "utf-16-le NUL escape": '{"roomName":"a\\u0000b"}'.encode("utf-16-le"),
    "utf-16 with BOM": '{"roomName":"test-room"}'.encode("utf-16"),
    "utf-32": '{"roomName":"test-room"}'.encode("utf-32"),
    "utf-8 BOM": b"\xef\xbb\xbf" + b'{"roomName":"test-room"}',
}


@pytest.mark.parametrize("name", sorted(BODIES))
def test_non_utf8_json_is_a_400_on_livekit_token(env, sql, name):
    from functions.livekit_token.app import app

    reply = Client(app).post(raw=BODIES[name], headers=sql.member("scout").auth())
    assert reply.status == 400, reply
    assert reply.json["error"] == "BAD_REQUEST"


@pytest.mark.parametrize("name", sorted(BODIES))
def test_non_utf8_json_is_a_400_on_unsubscribe(env, sql, name):
    from functions.notifications.subscribe import app

    reply = Client(app).request("DELETE", raw=BODIES[name].replace(b"roomName", b"endpoint"),
                                headers=sql.member("scout").auth())
    assert reply.status == 400, reply
    assert reply.json["error"] == "BAD_REQUEST"
