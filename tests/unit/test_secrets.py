"""Secrets from SSM Parameter Store and Secrets Manager (moto), cached and refreshed."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws

from shared.secrets import SecretCache, SecretError


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def aws(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-north-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        yield boto3.client("ssm"), boto3.client("secretsmanager")


def counting_factory(calls: list):
    def factory(kind):
        client = boto3.client(kind)
        original = client.get_parameter if kind == "ssm" else client.get_secret_value

        def wrapped(**kw):
            calls.append(kind)
            return original(**kw)

        if kind == "ssm":
            client.get_parameter = wrapped
        else:
            client.get_secret_value = wrapped
        return client

    return factory


def test_ssm_and_secrets_manager_values_are_loaded_cached_and_refreshed(aws):
    ssm, sm = aws
    ssm.put_parameter(Name="/nexus/prod/livekit", Value="lk-secret-1", Type="SecureString")
    arn = sm.create_secret(Name="nexus/prod/db", SecretString=json.dumps({"DATABASE_URL": "postgresql://a@b/c"}))["ARN"]
    env = {"LIVEKIT_API_SECRET_SSM_PARAMETER": "/nexus/prod/livekit", "DATABASE_URL_SECRET_ARN": arn}
    calls: list = []
    clock = Clock()
    cache = SecretCache(refresh_seconds=300, clock=clock, client_factory=counting_factory(calls))

    # Given references in the environment, when resolved, then both values arrive.
    assert cache.resolve(env) == {"LIVEKIT_API_SECRET": "lk-secret-1", "DATABASE_URL": "postgresql://a@b/c"}
    assert sorted(calls) == ["secretsmanager", "ssm"]

    # Within the refresh interval nothing is fetched again, even after a rotation.
    ssm.put_parameter(Name="/nexus/prod/livekit", Value="lk-secret-2", Type="SecureString", Overwrite=True)
    clock.now += 299
    assert cache.resolve(env)["LIVEKIT_API_SECRET"] == "lk-secret-1"
    assert len(calls) == 2

    # After the interval the rotated value is picked up.
    clock.now += 2
    assert cache.resolve(env)["LIVEKIT_API_SECRET"] == "lk-secret-2"
    assert len(calls) == 4


def test_plain_string_secret_is_used_as_is(aws):
    _, sm = aws
    arn = sm.create_secret(Name="vapid", SecretString="vapid-private")["ARN"]
    assert SecretCache().resolve({"VAPID_PRIVATE_KEY_SECRET_ARN": arn}) == {"VAPID_PRIVATE_KEY": "vapid-private"}


def test_missing_secret_is_reported_by_name_only(aws):
    ssm, _ = aws
    ssm.put_parameter(Name="/nexus/other", Value="do-not-print-me", Type="SecureString")
    with pytest.raises(SecretError) as err:
        SecretCache().resolve({"SUPABASE_JWT_SECRET_SSM_PARAMETER": "/nexus/missing",
                               "LIVEKIT_API_SECRET_SSM_PARAMETER": "/nexus/other"})
    text = str(err.value)
    assert "SUPABASE_JWT_SECRET" in text and "/nexus/missing" in text
    assert "do-not-print-me" not in text and "LIVEKIT_API_SECRET" not in text


def test_failed_refresh_keeps_the_last_good_value(aws):
    ssm, _ = aws
    ssm.put_parameter(Name="/nexus/jwt", Value="jwt-1", Type="SecureString")
    clock = Clock()
    cache = SecretCache(refresh_seconds=10, clock=clock)
    env = {"SUPABASE_JWT_SECRET_SSM_PARAMETER": "/nexus/jwt"}
    assert cache.resolve(env) == {"SUPABASE_JWT_SECRET": "jwt-1"}
    ssm.delete_parameter(Name="/nexus/jwt")
    clock.now += 11
    assert cache.resolve(env) == {"SUPABASE_JWT_SECRET": "jwt-1"}
