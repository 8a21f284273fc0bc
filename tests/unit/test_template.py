"""template.yaml describes the whole bundle as an operator needs it.

Read with cfn-lint's own YAML loader; `make lint` runs cfn-lint and
`sam validate --lint` on the same file.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cfnlint.decode import cfn_yaml

from nexus import package, registry

ROOT = Path(__file__).resolve().parents[2]
T = cfn_yaml.load(str(ROOT / "template.yaml"))
RESOURCES = T["Resources"]
FUNCTIONS = {k: v for k, v in RESOURCES.items() if v["Type"] == "AWS::Serverless::Function"}
NO_VALUE = {"Ref": "AWS::NoValue"}

# The secrets each function reads, and nothing else (least privilege). The
# database credential is every function's; health checks that every setting
# resolves, so it reads them all.
SECRETS = {
    "livekit-token": {"SUPABASE_JWT_SECRET", "LIVEKIT_API_SECRET"},
    "livekit-webhook": {"LIVEKIT_API_SECRET"},
    "net-bridge": {"SUPABASE_JWT_SECRET"},
    "academy-request": {"SUPABASE_JWT_SECRET"},
    "academy-accept": {"SUPABASE_JWT_SECRET", "LIVEKIT_API_SECRET"},
    "notifications-subscribe": {"SUPABASE_JWT_SECRET"},
    "handle-rescue-request": {"SUPABASE_JWT_SECRET", "VAPID_PRIVATE_KEY"},
    "health": {"SUPABASE_JWT_SECRET", "LIVEKIT_API_SECRET", "VAPID_PRIVATE_KEY", "SUPABASE_SERVICE_ROLE_KEY"},
    "livekit-webhook-worker": set(),
    "presence-reconciler": {"LIVEKIT_API_SECRET"},
    "sim-pod-expiry": {"LIVEKIT_API_SECRET"},
    "push-fanout": {"VAPID_PRIVATE_KEY"},
    "member-admin": {"SUPABASE_JWT_SECRET", "LIVEKIT_API_SECRET"},
    "livekit-access-sync": {"LIVEKIT_API_SECRET"},
}
POLICY_FOR = {
    "DATABASE_URL": "ReadDatabaseUrlPolicy", "SUPABASE_SERVICE_ROLE_KEY": "ReadServiceRoleKeyPolicy",
    "SUPABASE_JWT_SECRET": "ReadSupabaseJwtSecretPolicy", "LIVEKIT_API_SECRET": "ReadLiveKitApiSecretPolicy",
    "VAPID_PRIVATE_KEY": "ReadVapidPrivateKeyPolicy",
}
SECRET_VALUES = {"DATABASE_URL", "SUPABASE_SERVICE_ROLE_KEY", "SUPABASE_JWT_SECRET", "LIVEKIT_API_SECRET",
                 "LIVEKIT_WEBHOOK_SECRET", "VAPID_PRIVATE_KEY"}


def name_of(resource: dict) -> str:
    """The runbook name in FunctionName: !Sub nomadnexus-${Stage}-<name>."""
    return resource["Properties"]["FunctionName"]["Fn::Sub"].split("${Stage}-", 1)[1]


BY_NAME = {name_of(r): (logical_id, r) for logical_id, r in FUNCTIONS.items()}


def handler_of(path: str) -> str:
    module, _, attr = path.partition(":")
    return f"{module}.{'handler' if attr == 'app' else attr}"


def test_every_function_of_the_registry_is_in_the_template_and_nothing_else():
    expected = {**registry.HTTP_FUNCTIONS, **{k: v[0] for k, v in registry.SCHEDULED_FUNCTIONS.items()}}
    assert set(BY_NAME) == set(expected)
    for name, path in expected.items():
        assert BY_NAME[name][1]["Properties"]["Handler"] == handler_of(path), name


def test_runtime_architecture_and_aliases():
    g = T["Globals"]["Function"]
    assert g["Runtime"] == "python3.12" and g["Architectures"] == ["arm64"]
    assert g["AutoPublishAlias"] == "live" and g["Layers"] == [{"Ref": "SharedLibraryLayer"}]
    for logical_id, f in FUNCTIONS.items():
        # a new layer version publishes new function versions too
        assert f["Properties"].get("AutoPublishAliasAllProperties") is True, logical_id
    layer = RESOURCES["SharedLibraryLayer"]
    assert layer["Properties"]["PublishLambdaVersion"] is True
    assert layer["Properties"]["RetentionPolicy"] == "Retain"  # rolled-back versions still find their layer


@pytest.mark.parametrize("name", sorted(registry.HTTP_FUNCTIONS))
def test_http_functions_have_a_url_with_cors_from_the_parameter_and_an_output(name):
    logical_id, f = BY_NAME[name]
    url = f["Properties"]["FunctionUrlConfig"]
    assert url["AuthType"] == "NONE"  # the functions authenticate every request themselves
    if name == "livekit-webhook":
        assert "Cors" not in url  # LiveKit calls it server to server
    else:
        assert url["Cors"]["AllowOrigins"] == {"Ref": "CorsAllowedOrigins"}
        assert "authorization" in url["Cors"]["AllowHeaders"]
        # browsers hide Retry-After from page scripts unless the URL exposes it
        assert [h.lower() for h in url["Cors"]["ExposeHeaders"]] == ["retry-after"]
    outputs = [o for o in T["Outputs"].values() if o["Value"] == {"Fn::GetAtt": [f"{logical_id}Url", "FunctionUrl"]}]
    assert len(outputs) == 1 and outputs[0]["Description"].startswith(name), name


@pytest.mark.parametrize("name", sorted(registry.SCHEDULED_FUNCTIONS))
def test_scheduled_functions_have_a_schedule_retries_and_a_dead_letter_queue(name):
    _, f = BY_NAME[name]
    props = f["Properties"]
    assert "FunctionUrlConfig" not in props
    (event,) = props["Events"].values()
    assert event["Type"] == "ScheduleV2"
    p = event["Properties"]
    interval = registry.SCHEDULED_FUNCTIONS[name][1]
    assert p["ScheduleExpression"] == (f"rate({interval // 60} minute{'s' if interval > 60 else ''})")
    assert p["RetryPolicy"]["MaximumRetryAttempts"] >= 1
    assert p["RetryPolicy"]["MaximumEventAgeInSeconds"] <= interval  # never run a tick after the next one
    assert p["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": ["ScheduleDeadLetterQueue", "Arn"]}}
    # A failed run is not retried by Lambda (the next tick does the same work), but
    # it is dead-lettered, as is a run that waited out its age throttled.
    invoke = props["EventInvokeConfig"]
    assert invoke["MaximumRetryAttempts"] == 0 and invoke["MaximumEventAgeInSeconds"] <= interval
    assert invoke["DestinationConfig"]["OnFailure"] == {
        "Type": "SQS", "Destination": {"Fn::GetAtt": ["ScheduleDeadLetterQueue", "Arn"]}}


@pytest.mark.parametrize("name", sorted(BY_NAME))
def test_each_function_is_packaged_logged_and_alarmed(name):
    logical_id, f = BY_NAME[name]
    assert f["Metadata"]["BuildMethod"] == "makefile"
    assert package.FUNCTIONS[logical_id].handler == f["Properties"]["Handler"]
    stem = logical_id.removesuffix("Function")
    log_group = RESOURCES[f"{stem}LogGroup"]["Properties"]
    assert log_group["LogGroupName"] == {"Fn::Sub": f"/aws/lambda/${{{logical_id}}}"}
    assert log_group["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    errors, throttles = RESOURCES[f"{stem}ErrorsAlarm"]["Properties"], RESOURCES[f"{stem}ThrottlesAlarm"]["Properties"]
    assert throttles["MetricName"] == "Throttles"
    dims = [m["MetricStat"]["Metric"] for m in errors.get("Metrics", []) if "MetricStat" in m] or [errors]
    assert any(d["MetricName"] == "Errors" and d["Dimensions"][0]["Value"] == {"Ref": logical_id} for d in dims)
    if name in registry.HTTP_FUNCTIONS:  # a handled 500/503 is not a Lambda error: our metric counts it
        assert any(d["MetricName"] == "ServerErrors" and d["Dimensions"][0]["Value"] == name for d in dims)
    for alarm in (errors, throttles):
        assert alarm["AlarmActions"]["Fn::If"][0] == "HasAlarmTopic"


def test_dead_jobs_and_dead_lettered_schedules_are_alarmed():
    namespace = {"Fn::Sub": "NomadNexus/${Stage}"}  # what observability writes, per stage
    assert T["Globals"]["Function"]["Environment"]["Variables"]["NEXUS_METRICS_NAMESPACE"] == namespace
    for alarm, metric, function in (("WebhookJobsDeadAlarm", "WebhookJobsDead", "livekit-webhook-worker"),
                                    ("PushDeadAlarm", "PushDead", "push-fanout"),
                                    ("SimPodsDeferredAlarm", "SimPodsDeferred", "sim-pod-expiry"),
                                    ("LiveKitAccessDeferredAlarm", "LiveKitAccessDeferred", "livekit-access-sync")):
        p = RESOURCES[alarm]["Properties"]
        assert (p["Namespace"], p["MetricName"], p["Dimensions"][0]["Value"]) == (namespace, metric, function)
    dlq = RESOURCES["ScheduleDeadLetterAlarm"]["Properties"]
    assert dlq["Namespace"] == "AWS/SQS" and dlq["MetricName"] == "ApproximateNumberOfMessagesVisible"


def _env(f: dict) -> dict:
    merged = dict(T["Globals"]["Function"]["Environment"]["Variables"])
    merged.update(f["Properties"].get("Environment", {}).get("Variables", {}))
    return merged


def _policy_refs(f: dict) -> set[str]:
    refs = set()
    for p in f["Properties"].get("Policies", []):
        p = p["Fn::If"][1] if "Fn::If" in p else p
        refs.add(p["Ref"])
    return refs


@pytest.mark.parametrize("name", sorted(BY_NAME))
def test_each_function_reads_only_its_own_secrets_and_never_receives_a_value(name):
    _, f = BY_NAME[name]
    env = _env(f)
    assert not SECRET_VALUES & set(env), "secret values must come from SSM or Secrets Manager"
    referenced = {k.rsplit("_SSM_PARAMETER", 1)[0] for k in env if k.endswith("_SSM_PARAMETER")}
    assert referenced == {k.rsplit("_SECRET_ARN", 1)[0] for k in env if k.endswith("_SECRET_ARN")}
    assert referenced - {"DATABASE_URL", "SUPABASE_SERVICE_ROLE_KEY"} == SECRETS[name] - {"SUPABASE_SERVICE_ROLE_KEY"}
    expected_policies = {POLICY_FOR[s] for s in SECRETS[name] | {"DATABASE_URL", "SUPABASE_SERVICE_ROLE_KEY"}}
    assert _policy_refs(f) == expected_policies | {"DecryptSecretsPolicy"}
    # The service role key is everyone's only when it is the database credential.
    key_env = env["SUPABASE_SERVICE_ROLE_KEY_SSM_PARAMETER"]["Fn::If"][0]
    assert key_env == ("ServiceRoleKeyInSsm" if name == "health" else "RpcKeyInSsm")


def test_secret_policies_grant_one_read_on_one_resource():
    for secret, policy in POLICY_FOR.items():
        (statement,) = RESOURCES[policy]["Properties"]["PolicyDocument"]["Statement"]
        condition, in_secrets_manager, in_ssm = statement["Fn::If"]
        assert in_secrets_manager["Action"] == "secretsmanager:GetSecretValue"
        assert in_ssm["Action"] == "ssm:GetParameter"
        ref = in_secrets_manager["Resource"]["Ref"]
        assert ref.endswith("Ref") and ref in T["Parameters"]
        assert in_ssm["Resource"]["Fn::Sub"].endswith(f":parameter${{{ref}}}")
    kms = RESOURCES["DecryptSecretsPolicy"]["Properties"]["PolicyDocument"]["Statement"][0]
    assert kms["Action"] == "kms:Decrypt" and "kms:ViaService" in kms["Condition"]["StringEquals"]


def test_secret_parameters_name_where_a_secret_is_kept_and_refuse_a_pasted_value():
    import re

    for ref in ("DatabaseUrlRef", "ServiceRoleKeyRef", "SupabaseJwtSecretRef", "LiveKitApiSecretRef",
                "VapidPrivateKeyRef"):
        pattern = re.compile(T["Parameters"][ref]["AllowedPattern"])
        assert pattern.match("/nomadnexus/prod/livekit-api-secret")
        assert pattern.match("arn:aws:secretsmanager:eu-north-1:123456789012:secret:nomadnexus/prod/db-AbCdEf")
        for value in ("postgresql://postgres.ref:pw@aws-0-eu.pooler.supabase.com:6543/postgres",
                      "sk-0123456789abcdef", "eyJhbGciOiJIUzI1NiJ9.e30.c2ln"):
            assert not pattern.match(value), (ref, value)
    # at least one way to the database
    (assertion,) = T["Rules"]["DatabaseReachable"]["Assertions"]
    assert "Fn::Or" in assertion["Assert"]


# The stack runs with NEXUS_ENV=production far from any loopback LiveKit: its LIVEKIT_URL must
# be one the functions accept there (shared/config.py), refused at deploy rather than at the first call.
def test_livekit_url_parameter_accepts_only_what_production_functions_accept():
    import re

    from shared.config import settings_from

    pattern = re.compile(T["Parameters"]["LiveKitUrl"]["AllowedPattern"])
    for url in ("wss://project.livekit.cloud", "https://livekit.example.com:7880", "ws://livekit.example.com",
                "http://10.0.0.5:7880", "livekit.example.com"):
        accepted = settings_from({"LIVEKIT_URL": url}).livekit_url_problem is None
        assert bool(pattern.match(url)) is accepted, url
