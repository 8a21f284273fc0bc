"""The local gateway's /auth/v1 proxy, in front of the real auth server: the path goes on as
the client encoded it. A percent-encoded byte the gateway decoded before forwarding either
crashed the proxy (a space or CR/LF: 500) or changed the request the auth server saw (%3F
became the start of a query)."""

from __future__ import annotations

import asyncio

import pytest

from nexus.gateway import Gateway


def _get(gateway: Gateway, raw_path: bytes) -> tuple[int, bytes]:
    from urllib.parse import unquote_to_bytes

    scope = {"type": "http", "method": "GET", "path": unquote_to_bytes(raw_path).decode("latin-1"),
             "raw_path": raw_path, "query_string": b"", "headers": [], "client": ("127.0.0.1", 0)}
    messages = [{"type": "http.request", "body": b"", "more_body": False}]
    sent: list[dict] = []

    async def receive():
        return messages.pop(0)

    async def send(message):
        sent.append(message)

    try:
        asyncio.run(gateway(scope, receive, send))
    except Exception:
        return 500, b""  # what uvicorn answers for an exception in the app
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


@pytest.fixture
def gateway(auth):
    return Gateway({}, auth_upstream=auth.server.url)


def test_the_proxy_reaches_the_auth_server(gateway):
    status, _ = _get(gateway, b"/auth/v1/health")
    assert status == 200


@pytest.mark.parametrize("raw_path", [b"/auth/v1/health%20x", b"/auth/v1/health%0D%0AX-Injected:%201",
                                      b"/auth/v1/health%00"])
def test_an_encoded_control_character_is_not_a_500(gateway, raw_path):
    status, _ = _get(gateway, raw_path)
    assert 400 <= status < 500


def test_an_encoded_question_mark_stays_in_the_path(gateway):
    # /health?x is the health endpoint; /health%3Fx is a path the auth server does not serve.
    status, _ = _get(gateway, b"/auth/v1/health%3Fx")
    assert status == 404
