"""Secrets from SSM and Secrets Manager (moto) reaching a real function: livekit-token.

LIVEKIT_API_SECRET lives in an SSM SecureString and SUPABASE_JWT_SECRET in a
Secrets Manager secret; the environment only names them, as template.yaml
sets it up. The function is served on the real database.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import boto3
import jwt
import pytest
from moto import mock_aws

from shared import config
from tests import support
from tests.support import Client

ROOT = Path(__file__).resolve().parents[2]
LK_PARAM = "/nomadnexus/test/livekit-api-secret"
LK_SECRET_1 = "lk-secret-from-ssm-0123456789abcdef0123456789abcdef"
LK_SECRET_2 = "lk-secret-rotated-0123456789abcdef0123456789abcdef0"
JWT_SECRET_1 = "jwt-secret-from-secrets-manager-0123456789abcdef012345"
JWT_SECRET_2 = "jwt-secret-rotated-in-secrets-manager-0123456789abcdef"


class Clock:
    def __init__(self) -> None:
        self.now = 10_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def aws(env):
    env.setenv("AWS_DEFAULT_REGION", "eu-north-1")
    env.setenv("AWS_ACCESS_KEY_ID", "testing")
    env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        ssm, sm = boto3.client("ssm"), boto3.client("secretsmanager")
        ssm.put_parameter(Name=LK_PARAM, Value=LK_SECRET_1, Type="SecureString")
        arn = sm.create_secret(Name="nomadnexus/test/supabase",
                               SecretString=json.dumps({"SUPABASE_JWT_SECRET": JWT_SECRET_1}))["ARN"]
        # The deployment's environment: references only, no values.
        env.delenv("LIVEKIT_API_SECRET")
        env.delenv("SUPABASE_JWT_SECRET")
        env.setenv("LIVEKIT_API_SECRET_SSM_PARAMETER", LK_PARAM)
        env.setenv("SUPABASE_JWT_SECRET_SECRET_ARN", arn)
        env.setenv("SECRETS_REFRESH_SECONDS", "300")
        clock = Clock()
        env.setattr(config, "_clock", clock)
        config.get_settings.cache_clear()
        yield {"ssm": ssm, "sm": sm, "arn": arn, "clock": clock}
        config.get_settings.cache_clear()


@pytest.fixture
def client(aws):
    from functions.livekit_token.app import app

    return Client(app)


def ask(client, member, jwt_secret: str, room: str):
    headers = {"authorization": f"Bearer {support.sign_user_token(member.id, secret=jwt_secret)}",
               "content-type": "application/json"}
    return client.post({"roomName": room, "participantName": "Ace"}, headers)


def signed_with(token: str, secret: str) -> bool:
    try:
        jwt.decode(token, secret, algorithms=["HS256"], options={"verify_aud": False})
        return True
    except jwt.InvalidSignatureError:
        return False


def test_function_serves_with_secrets_from_ssm_and_secrets_manager(client, sql):
    # Given the two secrets only in AWS, when a scout asks for a token signed
    # with the Secrets Manager JWT secret, then it is accepted and the LiveKit
    # token is signed with the SSM secret.
    member, room = sql.member("scout"), sql.net()
    reply = ask(client, member, JWT_SECRET_1, room)
    assert reply.status == 200, reply
    assert signed_with(reply.json["token"], LK_SECRET_1)
    # A token signed with anything else is not a member's.
    assert ask(client, member, support.JWT_SECRET, room).status == 401


def test_rotated_secrets_are_picked_up_after_the_refresh_interval(client, sql, aws):
    member, room = sql.member("scout"), sql.net()
    assert ask(client, member, JWT_SECRET_1, room).status == 200

    # When both secrets are rotated in AWS...
    aws["ssm"].put_parameter(Name=LK_PARAM, Value=LK_SECRET_2, Type="SecureString", Overwrite=True)
    aws["sm"].put_secret_value(SecretId=aws["arn"], SecretString=json.dumps({"SUPABASE_JWT_SECRET": JWT_SECRET_2}))

    # ...then within the interval the container keeps the values it has (no AWS call per request)...
    aws["clock"].now += 299
    reply = ask(client, member, JWT_SECRET_1, room)
    assert reply.status == 200 and signed_with(reply.json["token"], LK_SECRET_1)
    assert ask(client, member, JWT_SECRET_2, room).status == 401

    # ...and after it, tokens signed with the new JWT secret pass, the old one's fail,
    # and LiveKit tokens are signed with the new LiveKit secret.
    aws["clock"].now += 2
    reply = ask(client, member, JWT_SECRET_2, room)
    assert reply.status == 200, reply
    assert signed_with(reply.json["token"], LK_SECRET_2)
    assert ask(client, member, JWT_SECRET_1, room).status == 401


def test_unchanged_secrets_keep_the_same_settings_object(client, sql, aws):
    # Re-reading values that did not change must not rebuild what depends on them
    # (the verifier's JWKS cache, the database connection, the push session).
    member, room = sql.member("scout"), sql.net()
    assert ask(client, member, JWT_SECRET_1, room).status == 200
    before = config.get_settings()
    aws["clock"].now += 301
    assert config.get_settings() is before


def test_a_missing_secret_is_reported_by_name_and_never_by_value(client, sql, aws, caplog):
    # Given a reference to a parameter that does not exist (a typo in the stack parameters)...
    aws["ssm"].put_parameter(Name="/nomadnexus/test/other", Value="do-not-print-me", Type="SecureString")
    os.environ["LIVEKIT_API_SECRET_SSM_PARAMETER"] = "/nomadnexus/test/typo"
    config.get_settings.cache_clear()
    member, room = sql.member("scout"), sql.net()

    # ...when a request arrives, then the caller gets the plain 500 envelope...
    with caplog.at_level(logging.ERROR, logger="nexus"):
        reply = ask(client, member, JWT_SECRET_1, room)
    assert reply.status == 500 and reply.json["error"] == "INTERNAL"
    assert b"LIVEKIT" not in reply.raw and b"typo" not in reply.raw
    # ...and the log names the setting and where it was looked for, never a value.
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "LIVEKIT_API_SECRET" in logged and "/nomadnexus/test/typo" in logged
    for value in ("do-not-print-me", LK_SECRET_1, JWT_SECRET_1):
        assert value not in logged

    # At Lambda init the same error stops the function with the name only.
    from shared.lambda_adapter import lambda_handler

    os.environ["AWS_LAMBDA_FUNCTION_NAME"] = "nomadnexus-test-livekit-token"
    try:
        with pytest.raises(config.ConfigError) as err:
            lambda_handler(client.app, require=("database", "auth", "livekit"))
    finally:
        del os.environ["AWS_LAMBDA_FUNCTION_NAME"]
        from shared import observability

        observability.reset_for_tests()
    assert "LIVEKIT_API_SECRET" in str(err.value) and JWT_SECRET_1 not in str(err.value)


def _imports_boto3(extra_env: dict[str, str]) -> tuple[bool, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_SSM_PARAMETER", "_SECRET_ARN"))}
    env.update(extra_env)
    code = ("import functions.livekit_token.app\n"
            "from shared.config import get_settings\n"
            "try:\n    get_settings()\nexcept Exception:\n    pass\n")
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", code], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in out.stderr.splitlines() if line.startswith("import time:")}
    return "boto3" in imported, out.stderr


def test_boto3_is_imported_only_when_a_secret_reference_is_configured(base_env):
    # Given plain environment values (local runs), boto3 stays off the import path...
    plain = {**base_env, "AWS_DEFAULT_REGION": "eu-north-1"}
    imported, _ = _imports_boto3(plain)
    assert not imported
    # ...and with a reference it is imported to fetch it.
    with_ref = {**plain, "LIVEKIT_API_SECRET_SSM_PARAMETER": "/nomadnexus/none", "AWS_ACCESS_KEY_ID": "x",
                "AWS_SECRET_ACCESS_KEY": "x", "AWS_EC2_METADATA_DISABLED": "true",
                "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}
    imported, _ = _imports_boto3(with_ref)
    assert imported
