"""Every AWS call each function makes is one its role in template.yaml allows, and every grant is used.

For each function, for each way an operator can keep the secrets (all in SSM,
all in Secrets Manager, under a customer managed KMS key, the database
reached through PostgREST with the service role key), the function's
environment is taken from template.yaml resolved with those stack
parameters, the secrets are put where the parameters say (moto), and the
function's own code reads them (shared/config.py, as at Lambda init). The
calls it makes are recorded by tests/aws_calls.py (which checks every call of
the whole suite the same way) and held against the role: a call the role
would refuse fails, and so does a grant no call used.
"""

from __future__ import annotations

import os

import boto3
import pytest
from moto import mock_aws

from shared import config
from tests import aws_calls, iam

REGION = "eu-north-1"
VALUES = {
    "DATABASE_URL": "postgresql://postgres.ref:pw@127.0.0.1:6543/postgres",
    "SUPABASE_SERVICE_ROLE_KEY": "service-role-key-value",
    "SUPABASE_JWT_SECRET": "jwt-secret-value-0123456789abcdef0123456789abcdef",
    "LIVEKIT_API_SECRET": "livekit-secret-value-0123456789abcdef0123456789abcdef",
    "VAPID_PRIVATE_KEY": "vapid-private-key-value",
}
# (store, database transport, customer managed key)
LAYOUTS = {
    "ssm": ("ssm", "database_url", False),
    "secretsmanager": ("secretsmanager", "database_url", False),
    "ssm+cmk": ("ssm", "database_url", True),
    "secretsmanager+cmk": ("secretsmanager", "database_url", True),
    "rpc-ssm": ("ssm", "rpc", False),
    "rpc-secretsmanager+cmk": ("secretsmanager", "rpc", True),
}


@pytest.fixture
def aws(monkeypatch):
    for key in list(os.environ):
        if key.startswith(("AWS_", "LIVEKIT_", "SUPABASE_", "VAPID_", "NEXT_PUBLIC_", "DATABASE_URL")):
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        yield
    config.get_settings.cache_clear()


def put_secrets(store: str, key_arn: str | None, transport: str) -> dict[str, str]:
    """The secrets where the operator keeps them; returns the stack parameters naming them."""
    ssm, sm = boto3.client("ssm"), boto3.client("secretsmanager")
    params: dict[str, str] = {}
    for name, value in VALUES.items():
        if transport == "rpc" and name == "DATABASE_URL":
            continue
        if store == "ssm":
            ref = f"/nomadnexus/test/{name.lower().replace('_', '-')}"
            ssm.put_parameter(Name=ref, Value=value, Type="SecureString", **({"KeyId": key_arn} if key_arn else {}))
        else:
            ref = sm.create_secret(Name=f"nomadnexus/test/{name.lower()}", SecretString=value,
                                   **({"KmsKeyId": key_arn} if key_arn else {}))["ARN"]
        params[iam.SECRET_PARAMETER[name]] = ref
    return params


def run_as(logical_id: str, stack: iam.Stack, monkeypatch) -> list[iam.Verdict]:
    """The function's environment from the template, then its secret reads; the verdicts on its calls."""
    environment = stack.environment(logical_id)
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    start = len(aws_calls.VERDICTS)
    config.get_settings.cache_clear()
    config.get_settings()
    for key in environment:
        monkeypatch.delenv(key)
    return aws_calls.VERDICTS[start:]


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("logical_id", sorted(iam.function_ids()))
def test_each_function_makes_only_calls_its_role_allows_and_uses_every_grant(logical_id, layout, aws, monkeypatch):
    store, transport, cmk = LAYOUTS[layout]
    key_arn = boto3.client("kms").create_key(Description="secrets")["KeyMetadata"]["Arn"] if cmk else None
    params = put_secrets(store, key_arn, transport)
    if key_arn:
        params["SecretsKmsKeyArn"] = key_arn
    stack = iam.Stack.with_parameters(params, region=REGION)

    verdicts = run_as(logical_id, stack, monkeypatch)

    # Given the function's environment, when it reads its secrets, then each call is its own...
    assert verdicts, f"{logical_id} made no AWS call"
    for verdict in verdicts:
        assert logical_id in verdict.checked, (verdict.call, verdict.checked)
        # ...and its role allows it, including what AWS decrypts on its behalf.
        mine = [need for f, need in verdict.refused if f == logical_id]
        assert not mine, f"{logical_id} would be refused: " + "; ".join(map(str, mine))
    if cmk:
        assert any(need.on_behalf for v in verdicts for need in iam.needs(v.call))
    # And every grant its role carries was needed by one of those calls.
    granted = iam.grants(stack.statements(logical_id))
    used = {(p, a, r) for v in verdicts for f, p, a, r in v.used if f == logical_id}
    assert granted - used == set(), f"{logical_id} is granted what it never uses: {granted - used}"


# -- the checker itself refuses what IAM refuses ---------------------------------------------------

def call(operation="GetParameters", params=None, refs=None, keys=None, service="ssm") -> iam.Call:
    return iam.Call(service, operation, params or {"Names": ["/nomadnexus/test/livekit"], "WithDecryption": True},
                    REGION, "123456789012", refs or {"LIVEKIT_API_SECRET": ("ssm", "/nomadnexus/test/livekit")},
                    keys=keys or {})


PARAM_ARN = f"arn:aws:ssm:{REGION}:123456789012:parameter/nomadnexus/test/livekit"
KEY = f"arn:aws:kms:{REGION}:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def allow(action, resource, condition=None):
    statement = {"Effect": "Allow", "Action": action, "Resource": resource}
    if condition:
        statement["Condition"] = condition
    return [("Policy", statement)]


def test_get_parameter_does_not_grant_get_parameters():
    # GetParameters (what shared/secrets.py calls, batched) is its own IAM action.
    (need,) = iam.needs(call())
    assert need == iam.Need("ssm:GetParameters", PARAM_ARN)
    assert not iam.allowed(allow("ssm:GetParameter", PARAM_ARN), need)
    assert iam.allowed(allow("ssm:GetParameters", PARAM_ARN), need)
    assert iam.allowed(allow("ssm:GetParameter*", PARAM_ARN), need)


def test_another_parameter_or_a_deny_is_refused():
    (need,) = iam.needs(call())
    assert not iam.allowed(allow("ssm:GetParameters", PARAM_ARN + "-other"), need)
    statements = allow("ssm:GetParameters", "*") + [("Deny", {"Effect": "Deny", "Action": "ssm:*",
                                                              "Resource": PARAM_ARN})]
    assert not iam.allowed(statements, need)


def test_a_customer_managed_key_needs_kms_decrypt_through_the_store():
    needs = iam.needs(call(keys={PARAM_ARN: KEY}))
    decrypt = needs[1]
    assert decrypt.action == "kms:Decrypt" and decrypt.resource == KEY and decrypt.on_behalf
    via = {"StringEquals": {"kms:ViaService": [f"ssm.{REGION}.amazonaws.com"]}}
    assert iam.allowed(allow("kms:Decrypt", KEY, via), decrypt)
    assert not iam.allowed(allow("kms:Decrypt", KEY, {"StringEquals": {"kms:ViaService": "s3.x"}}), decrypt)
    assert not iam.allowed(allow("kms:Decrypt", KEY.replace("1234abcd", "ffffffff"), via), decrypt)


def test_the_template_with_a_key_other_than_secrets_kms_key_arn_is_refused():
    # The secrets are encrypted with one key, the stack names another: the role may not decrypt.
    other = KEY.replace("1234abcd", "eeeeeeee")
    verdict = iam.check(call(keys={PARAM_ARN: KEY}))
    assert not verdict.refused and verdict.checked
    stack = iam.Stack.with_parameters({"LiveKitApiSecretRef": "/nomadnexus/test/livekit", "SecretsKmsKeyArn": other,
                                       "DatabaseUrlRef": "/nomadnexus/test/db"}, region=REGION)
    decrypt = iam.needs(call(keys={PARAM_ARN: KEY}))[1]
    assert not iam.allowed(stack.statements("PresenceReconcilerFunction"), decrypt)
