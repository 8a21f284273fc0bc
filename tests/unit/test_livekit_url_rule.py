"""LIVEKIT_URL must keep room-admin tokens off the wire in clear (issue 25): wss:// or https://,
unless NEXUS_ENV=dev or the host is loopback (the rule the JWKS URL follows). Anything else is a
configuration error naming the variable, never its value."""

from __future__ import annotations

import logging

import pytest

from shared.config import LIVEKIT_URL_RULE, ConfigError, settings_from
from tests import support
from tests.support import Client

SECURE = ["wss://livekit.example.invalid", "https://livekit.example.invalid:7880/base", "wss://project.livekit.cloud"]
LOOPBACK = ["ws://127.0.0.1:7880", "http://localhost:7880", "ws://[::1]:7880", "ws://user:pw@127.0.0.1:7880"]
INSECURE = ["ws://livekit.example.invalid", "http://10.0.0.5:7880", "ws://127.0.0.1.example.invalid",
            "ws://localhost.example.invalid:7880", "http://user:pw@livekit.example.invalid"]
NOT_A_LIVEKIT_URL = ["ftp://livekit.example.invalid", "livekit.example.invalid:7880", "wss://", "wss://:7880",
                     "wss://host:notaport", "ws://[::1"]


def settings(url: str, env: str = "production"):
    return settings_from({"NEXUS_ENV": env, "LIVEKIT_URL": url, "LIVEKIT_API_KEY": support.LIVEKIT_KEY,
                          "LIVEKIT_API_SECRET": support.LIVEKIT_SECRET})


@pytest.mark.parametrize("url", SECURE + LOOPBACK)
def test_secure_or_loopback_urls_are_accepted_in_production(url):
    assert settings(url).require("livekit").LIVEKIT_URL


@pytest.mark.parametrize("url", INSECURE + NOT_A_LIVEKIT_URL)
def test_other_urls_are_a_configuration_error_naming_the_variable(url):
    with pytest.raises(ConfigError) as raised:
        settings(url).require("livekit")
    message = str(raised.value)
    assert message.startswith("Invalid configuration: LIVEKIT_URL")
    assert "wss://" in message  # says what would do
    assert message == LIVEKIT_URL_RULE  # a constant: the value is never in it


@pytest.mark.parametrize("url", INSECURE)
def test_dev_may_use_plain_ws_anywhere(url):
    assert settings(url, "dev").require("livekit").LIVEKIT_URL


@pytest.mark.parametrize("url", ["ftp://livekit.example.invalid", "livekit.example.invalid:7880"])
def test_dev_still_needs_a_livekit_url(url):
    with pytest.raises(ConfigError):
        settings(url, "dev").require("livekit")


# Given a production livekit-token whose LIVEKIT_URL is plain ws:// to a remote host, when a
# member asks for a token, then nothing is minted: 500 "not configured correctly", and the log
# names LIVEKIT_URL and the rule, not the URL.
def test_livekit_token_refuses_to_mint_for_a_plain_ws_url(env, sql, caplog):
    env.setenv("LIVEKIT_URL", "ws://livekit.example.invalid")
    from functions.livekit_token.app import app

    member, net = sql.member("scout"), sql.net()
    with caplog.at_level(logging.ERROR):
        reply = Client(app).post({"roomName": net}, member.auth())
    assert reply.status == 500, reply
    assert reply.json == {"error": "INTERNAL", "message": "The service is not configured correctly."}
    assert "LIVEKIT_URL" in caplog.text and "livekit.example.invalid" not in caplog.text
