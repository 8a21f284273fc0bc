"""Secrets from SSM Parameter Store and Secrets Manager (moto), cached and refreshed."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws

from shared.secrets import SecretCache, SecretError, SecretsUnavailable


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
        original = client.get_parameters if kind == "ssm" else client.get_secret_value

        def wrapped(**kw):
            calls.append(kind)
            return original(**kw)

        if kind == "ssm":
            client.get_parameters = wrapped
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


class _StallingSsm:
    """A loopback SSM endpoint that answers GetParameters once, then stalls."""

    def __init__(self, value: str):
        import http.server
        import threading

        outer = self
        self.calls = 0
        self.stalls_ended = 0  # stalled answers that ended (30 s, or at close)

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("content-length", 0)))
                outer.calls += 1
                if outer.calls > 1:
                    outer.release.wait(30)
                    outer.stalls_ended += 1
                    return
                body = json.dumps({"Parameters": [{"Name": "/p", "Type": "SecureString", "Value": value,
                                                   "Version": 1}], "InvalidParameters": []}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/x-amz-json-1.1")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.release = threading.Event()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def test_a_stalling_store_is_abandoned_in_time_and_the_last_good_value_served(monkeypatch):
    ssm = _StallingSsm("lk-secret-1")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-north-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_ENDPOINT_URL_SSM", ssm.url)
    try:
        clock = Clock()
        cache = SecretCache(refresh_seconds=300, clock=clock)
        env = {"LIVEKIT_API_SECRET_SSM_PARAMETER": "/p"}
        assert cache.resolve(env) == {"LIVEKIT_API_SECRET": "lk-secret-1"}

        # Given the store now stalls (30 s), when the value is due for a refresh,
        # then the request gets the last good value without waiting the stall out: the client's
        # attempts, each cut by its 1 s connect and 2 s read timeouts, fit in a 10 s Lambda.
        clock.now += 301
        assert cache.resolve(env) == {"LIVEKIT_API_SECRET": "lk-secret-1"}
        assert ssm.stalls_ended == 0
        assert 1 <= ssm.calls - 1 <= 2  # attempts at the stalled store: (1 + 2) s each, at most 6 s

        # And the next requests do not wait on the store again for a while.
        calls = ssm.calls
        clock.now += 5
        assert cache.resolve(env) == {"LIVEKIT_API_SECRET": "lk-secret-1"}
        assert ssm.calls == calls
    finally:
        ssm.close()


# --- one call per store, and a store that does not answer (issue 13) ------------------------

def test_all_ssm_parameters_come_from_one_get_parameters_call(aws):
    ssm, sm = aws
    names = {"DATABASE_URL": "/nexus/db", "SUPABASE_JWT_SECRET": "/nexus/jwt", "LIVEKIT_API_SECRET": "/nexus/lk",
             "VAPID_PRIVATE_KEY": "/nexus/vapid"}
    for name, ref in names.items():
        ssm.put_parameter(Name=ref, Value=f"value-of-{name}", Type="SecureString")
    arn = sm.create_secret(Name="nexus/service", SecretString=json.dumps({"SUPABASE_SERVICE_ROLE_KEY": "srk"}))["ARN"]
    env = {f"{n}_SSM_PARAMETER": ref for n, ref in names.items()} | {"SUPABASE_SERVICE_ROLE_KEY_SECRET_ARN": arn}
    calls: list = []
    values = SecretCache(client_factory=counting_factory(calls)).resolve(env)
    assert values == {**{n: f"value-of-{n}" for n in names}, "SUPABASE_SERVICE_ROLE_KEY": "srk"}
    # Given four SSM parameters and one Secrets Manager secret: one call to each store.
    assert sorted(calls) == ["secretsmanager", "ssm"]


def stubbed(kind: str):
    from botocore.stub import Stubber

    client = boto3.client(kind, region_name="eu-north-1", aws_access_key_id="x", aws_secret_access_key="x")
    stub = Stubber(client)
    stub.activate()
    return client, stub


SSM_ENV = {"LIVEKIT_API_SECRET_SSM_PARAMETER": "/nexus/lk", "SUPABASE_JWT_SECRET_SSM_PARAMETER": "/nexus/jwt"}
SSM_OK = {"Parameters": [{"Name": "/nexus/lk", "Type": "SecureString", "Value": "lk-1", "Version": 1},
                         {"Name": "/nexus/jwt", "Type": "SecureString", "Value": "jwt-1", "Version": 1}]}
SSM_CALL = {"Names": ["/nexus/jwt", "/nexus/lk"], "WithDecryption": True}


@pytest.mark.parametrize("code,status", [("ThrottlingException", 400), ("InternalServerError", 500),
                                         ("ServiceUnavailable", 503)])
def test_a_throttled_or_failing_ssm_is_unavailable_and_asked_again_next_time(code, status):
    client, stub = stubbed("ssm")
    stub.add_client_error("get_parameters", service_error_code=code, http_status_code=status,
                          expected_params=SSM_CALL)
    stub.add_response("get_parameters", SSM_OK, SSM_CALL)
    cache = SecretCache(client_factory=lambda kind: client)
    # Given SSM throttles (or fails) the first read, then the error says "unavailable", by name only...
    with pytest.raises(SecretsUnavailable) as err:
        cache.resolve(SSM_ENV)
    assert "LIVEKIT_API_SECRET" in str(err.value) and code in str(err.value)
    # ...and nothing is remembered: the next call asks again and gets both values in one call.
    assert cache.resolve(SSM_ENV) == {"LIVEKIT_API_SECRET": "lk-1", "SUPABASE_JWT_SECRET": "jwt-1"}
    stub.assert_no_pending_responses()


def test_secrets_manager_throttling_is_unavailable_a_missing_secret_is_not():
    client, stub = stubbed("secretsmanager")
    stub.add_client_error("get_secret_value", service_error_code="ThrottlingException", http_status_code=400)
    stub.add_client_error("get_secret_value", service_error_code="ResourceNotFoundException", http_status_code=400)
    cache = SecretCache(client_factory=lambda kind: client)
    env = {"VAPID_PRIVATE_KEY_SECRET_ARN": "arn:aws:secretsmanager:eu-north-1:1:secret:v"}
    with pytest.raises(SecretsUnavailable):
        cache.resolve(env)
    with pytest.raises(SecretError) as err:
        cache.resolve(env)
    assert not isinstance(err.value, SecretsUnavailable)  # a deployment mistake: no retry will fix it


def test_an_unreachable_store_is_unavailable(monkeypatch):
    # Nothing listens on port 9: connection refused, the outage case.
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-north-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_ENDPOINT_URL_SSM", "http://127.0.0.1:9")
    with pytest.raises(SecretsUnavailable) as err:
        SecretCache().resolve(SSM_ENV)
    assert "EndpointConnectionError" in str(err.value)


def test_a_parameter_ssm_does_not_have_is_missing_not_unavailable(aws):
    ssm, _ = aws
    ssm.put_parameter(Name="/nexus/lk", Value="lk-1", Type="SecureString")
    with pytest.raises(SecretError) as err:
        SecretCache().resolve(SSM_ENV)
    assert not isinstance(err.value, SecretsUnavailable)
    assert "SUPABASE_JWT_SECRET" in str(err.value) and "LIVEKIT_API_SECRET" not in str(err.value)


def test_a_throttled_refresh_keeps_the_last_good_values():
    client, stub = stubbed("ssm")
    stub.add_response("get_parameters", SSM_OK, SSM_CALL)
    stub.add_client_error("get_parameters", service_error_code="ThrottlingException", http_status_code=400)
    clock = Clock()
    cache = SecretCache(refresh_seconds=10, clock=clock, client_factory=lambda kind: client)
    assert cache.resolve(SSM_ENV)["LIVEKIT_API_SECRET"] == "lk-1"
    clock.now += 11
    assert cache.resolve(SSM_ENV) == {"LIVEKIT_API_SECRET": "lk-1", "SUPABASE_JWT_SECRET": "jwt-1"}
    stub.assert_no_pending_responses()
