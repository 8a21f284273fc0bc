"""A secret store that does not answer at cold start (issue 13): a 503, not a dead container.

livekit-token with LIVEKIT_API_SECRET in SSM and SUPABASE_JWT_SECRET in
Secrets Manager (moto), as in test_secrets_wiring.py; botocore's Stubber
makes SSM throttle, a closed port makes it unreachable. The container's init
(shared.lambda_adapter.lambda_handler) must not fail, the request must get
the shared 503 envelope with Retry-After (in the header and in the body),
and the next request must try the store again and be served.
"""

from __future__ import annotations

import os

import pytest
from botocore.stub import Stubber

from shared import config, observability, secrets
from tests import support
from tests.integration.test_secrets_wiring import JWT_SECRET_1, LK_SECRET_1, ask, aws, client, signed_with  # noqa: F401

REQUIRE = ("database", "auth", "livekit")


@pytest.fixture
def throttled_ssm(aws, monkeypatch):  # noqa: F811
    """SSM answers ThrottlingException until `.stub.deactivate()`; then moto answers."""
    stubs: list[Stubber] = []
    real = secrets._boto3_client

    def factory(kind: str):
        made = real(kind)
        if kind == "ssm":
            stub = Stubber(made)
            for _ in range(5):
                stub.add_client_error("get_parameters", service_error_code="ThrottlingException",
                                      service_message="Rate exceeded", http_status_code=400)
            stub.activate()
            stubs.append(stub)
        return made

    monkeypatch.setattr(secrets, "_boto3_client", factory)
    config.get_settings.cache_clear()
    return stubs


def lambda_init(app):
    from shared.lambda_adapter import lambda_handler

    os.environ["AWS_LAMBDA_FUNCTION_NAME"] = "nomadnexus-test-livekit-token"
    try:
        return lambda_handler(app, require=REQUIRE)
    finally:
        del os.environ["AWS_LAMBDA_FUNCTION_NAME"]
        observability.reset_for_tests()


def assert_unavailable(reply):
    assert reply.status == 503, reply
    assert reply.headers["retry-after"] == str(config.SECRETS_RETRY_AFTER_SECONDS)
    assert reply.json["error"] == "UNAVAILABLE"
    # The body carries it too, as a 429's does: browser code may not see the header.
    assert reply.json["details"]["retryAfter"] == config.SECRETS_RETRY_AFTER_SECONDS
    assert LK_SECRET_1.encode() not in reply.raw and b"/nomadnexus" not in reply.raw


def test_throttled_ssm_at_cold_start_answers_503_then_serves_once_ssm_answers(client, sql, throttled_ssm, env):
    member, room = sql.member("scout"), sql.net()
    env.setenv("CORS_ALLOW_ORIGINS", "https://app.example")
    # Given SSM throttles, when the container starts, then its init does not fail...
    lambda_init(client.app)
    # ...and a request gets the 503 envelope, with Retry-After exposed to browser code.
    reply = client.post({"roomName": room, "participantName": "Ace"},
                        {"authorization": f"Bearer {support.sign_user_token(member.id, secret=JWT_SECRET_1)}",
                         "content-type": "application/json", "origin": "https://app.example"})
    assert_unavailable(reply)
    assert reply.headers["access-control-expose-headers"] == "retry-after"
    assert reply.headers["access-control-allow-origin"] == "https://app.example"
    assert_unavailable(ask(client, member, JWT_SECRET_1, room))  # still throttled: asked again, still 503

    # When SSM answers again, the next request reads it and is served.
    throttled_ssm[0].deactivate()
    reply = ask(client, member, JWT_SECRET_1, room)
    assert reply.status == 200, reply
    assert signed_with(reply.json["token"], LK_SECRET_1)


def test_unreachable_ssm_answers_503(client, sql, aws, env):  # noqa: F811
    member, room = sql.member("scout"), sql.net()
    env.setenv("AWS_ENDPOINT_URL_SSM", "http://127.0.0.1:9")  # nothing listens there: refused
    config.get_settings.cache_clear()
    lambda_init(client.app)
    assert_unavailable(ask(client, member, JWT_SECRET_1, room))
    # And once SSM is reachable again (moto), the same container serves.
    env.delenv("AWS_ENDPOINT_URL_SSM")
    secrets_cache = config._secret_cache
    secrets_cache._clients.clear()
    assert ask(client, member, JWT_SECRET_1, room).status == 200
