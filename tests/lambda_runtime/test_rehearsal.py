"""Every package as Lambda runs it: AWS's Runtime Interface Emulator, awslambdaric, a read-only sandbox.

The packages come from nexus/package.py (the code path `make package` takes), built for
this machine's architecture and Python (the Runtime's minor, tests/unit/test_runtime.py).
Each function gets the environment template.yaml gives it (its own settings, the values
of only the secrets its role may read) against the test stack (embedded PostgreSQL with
the real migrations), then a cold start and one real event: a Function URL event
(payload 2.0, text or base64 body) for the HTTP functions, EventBridge Scheduler's
event for the scheduled ones. Then what an operator sees when a secret cannot be read
at init (docs/deploy.md): a store that does not answer, a parameter the role may not read.
"""

from __future__ import annotations

import base64
import json
import os
import secrets as pysecrets
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from nexus import lambda_emulator, package
from nexus.webhook_test import sign as sign_webhook
from tests import iam, support
from tests.integration.test_lambda_events import url_event

# A first run builds every package (about three minutes on two busy cores; cached after):
# `make test-slow`, which .ci/run runs after `make test`.
pytestmark = pytest.mark.slow

SERVICE_ROLE_KEY = "service-role-key-for-the-rehearsal"


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


_vapid = ec.generate_private_key(ec.SECP256R1())
VAPID_PUBLIC = _b64url(_vapid.public_key().public_bytes(serialization.Encoding.X962,
                                                         serialization.PublicFormat.UncompressedPoint))
VAPID_PRIVATE = _b64url(_vapid.private_numbers().private_value.to_bytes(32, "big"))


def values(database_url: str) -> dict[str, str]:
    return {"DATABASE_URL": database_url, "SUPABASE_SERVICE_ROLE_KEY": SERVICE_ROLE_KEY,
            "SUPABASE_JWT_SECRET": support.JWT_SECRET, "LIVEKIT_API_SECRET": support.LIVEKIT_SECRET,
            "VAPID_PRIVATE_KEY": VAPID_PRIVATE}


STACK = iam.Stack.with_parameters({
    "DatabaseUrlRef": "/rehearsal/database-url", "ServiceRoleKeyRef": "/rehearsal/service-role-key",
    "SupabaseJwtSecretRef": "/rehearsal/supabase-jwt-secret", "LiveKitApiSecretRef": "/rehearsal/livekit-api-secret",
    "VapidPrivateKeyRef": "/rehearsal/vapid-private-key", "LiveKitUrl": support.LIVEKIT_URL,
    "LiveKitApiKey": support.LIVEKIT_KEY, "VapidPublicKey": VAPID_PUBLIC})


def environment(logical_id: str, database_url: str, *, plain: bool = True) -> dict[str, str]:
    """template.yaml's environment for the function; with `plain`, each secret it may read as its value."""
    env = STACK.environment(logical_id)
    env.update({"AWS_LAMBDA_FUNCTION_NAME": f"nomadnexus-test-{iam.function_name(logical_id)}",
                "SUPABASE_URL": support.SUPABASE_URL, "SUPABASE_JWKS_URL": "off",
                "AWS_ACCESS_KEY_ID": "ASIAREHEARSAL", "AWS_SECRET_ACCESS_KEY": "rehearsal",
                "AWS_SESSION_TOKEN": "rehearsal", "AWS_EC2_METADATA_DISABLED": "true"})
    if plain:
        for name in iam.secret_refs(env):
            env.pop(f"{name}_SSM_PARAMETER", None)
            env.pop(f"{name}_SECRET_ARN", None)
            env[name] = values(database_url)[name]
    return env


def timeout_of(logical_id: str) -> int:
    props = iam.template()["Resources"][logical_id]["Properties"]
    return int(props.get("Timeout", iam.template()["Globals"]["Function"]["Timeout"]))


def sandbox(host_packages: Path, rie: Path, logical_id: str, env: dict[str, str], tmp_path: Path):
    return lambda_emulator.Sandbox(host_packages / logical_id, host_packages / package.LAYER,
                                   host_packages / "runtime", package.FUNCTIONS[logical_id].handler, env,
                                   rie=rie, timeout=timeout_of(logical_id), log_path=tmp_path / f"{logical_id}.log")


def scheduler_event(logical_id: str) -> dict:
    """What EventBridge Scheduler delivers to a Lambda target with no Input (template.yaml's schedules)."""
    name = f"nomadnexus-test-{iam.function_name(logical_id)}"
    return {"version": "0", "id": str(uuid.uuid4()), "detail-type": "Scheduled Event", "source": "aws.scheduler",
            "account": "123456789012", "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "region": "eu-north-1", "resources": [f"arn:aws:scheduler:eu-north-1:123456789012:schedule/default/{name}"],
            "detail": "{}"}


def post(member: support.Member | None, body: dict, *, b64: bool, headers: dict | None = None,
         method: str = "POST") -> dict:
    hdrs = {"content-type": "application/json", **(headers or {})}
    if member is not None:
        hdrs["authorization"] = f"Bearer {member.token()}"
    return url_event(method, hdrs, json.dumps(body).encode() if body is not None else None, b64=b64)


def net_id(sql, code: str) -> str:
    return str(sql.one("SELECT id FROM public.voice_nets WHERE code = %s", (code,)))


def http_case(logical_id: str, sql) -> tuple[dict, int]:
    """(a real Function URL event for the function, the status it must answer)."""
    scout = sql.member("scout")
    founder = sql.member("founder")
    if logical_id == "LiveKitTokenFunction":
        return post(scout, {"roomName": sql.net(), "participantName": "Ace"}, b64=False), 200
    if logical_id == "LiveKitWebhookFunction":
        tag = pysecrets.token_hex(6)
        event = {"event": "participant_joined", "id": f"EV_rh{tag}", "createdAt": str(int(time.time())),
                 "room": {"sid": f"RM_rh{tag}", "name": f"rehearsal-{tag}"},
                 "participant": {"sid": f"PA_rh{tag}", "identity": f"rehearsal-{tag}", "joinedAt": str(int(time.time())),
                                 "state": "ACTIVE"}}
        body = json.dumps(event, separators=(",", ":")).encode()
        # LiveKit's content type is not text to a Function URL: the body arrives base64-encoded.
        return url_event("POST", {"content-type": "application/webhook+json",
                                  "authorization": sign_webhook(body, support.LIVEKIT_KEY, support.LIVEKIT_SECRET)},
                         body, b64=True), 200
    if logical_id == "NetBridgeFunction":
        a, b = net_id(sql, sql.net()), net_id(sql, sql.net())
        return post(founder, {"sourceNetId": a, "targetNetId": b, "action": "link"}, b64=True), 201
    if logical_id == "AcademyRequestFunction":  # a skill the database does not have
        return post(scout, {"skillId": str(uuid.uuid4())}, b64=False), 404
    if logical_id == "AcademyAcceptFunction":   # a request the database does not have
        return post(scout, {"requestId": str(uuid.uuid4())}, b64=True), 404
    if logical_id == "NotificationsSubscribeFunction":
        device = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        return post(scout, {"endpoint": f"https://push.example.test/rehearsal/{uuid.uuid4().hex}",
                            "p256dh": _b64url(device), "auth": _b64url(os.urandom(16))}, b64=True), 200
    if logical_id == "RescueRequestFunction":
        return post(scout, {"location": "Hangar 3, rehearsal", "flareType": "MEDICAL"}, b64=False), 202
    if logical_id == "MemberAdminFunction":
        return post(founder, {"userId": scout.id, "rank": "voyager", "reason": "rehearsal"}, b64=False), 200
    if logical_id == "HealthFunction":
        # 200 or 503 by what it finds (LiveKit is not reachable here); either is health's own answer.
        return url_event("GET", {"authorization": f"Bearer {SERVICE_ROLE_KEY}"}, None, b64=False), 0
    raise AssertionError(f"no event for {logical_id}")


HTTP = sorted(f for f in package.FUNCTIONS if "FunctionUrlConfig" in iam.template()["Resources"][f]["Properties"])
SCHEDULED = sorted(set(package.FUNCTIONS) - set(HTTP))


def test_every_function_is_rehearsed():
    assert set(HTTP) | set(SCHEDULED) == set(iam.function_ids())
    assert len(HTTP) == 9 and len(SCHEDULED) == 5


@pytest.mark.parametrize("logical_id", HTTP)
def test_http_function_cold_starts_and_answers_a_function_url_event(logical_id, host_packages, rie, database_url,
                                                                    sql, tmp_path):
    event, expected = http_case(logical_id, sql)
    with sandbox(host_packages, rie, logical_id, environment(logical_id, database_url), tmp_path) as box:
        reply = box.invoke(event)
        assert reply.status == 200, (reply.status, reply.body[:2000], (tmp_path / f"{logical_id}.log").read_text()[-3000:])
        answer = reply.json
        assert "errorType" not in answer, answer
        assert answer["headers"]["content-type"].startswith("application/json")
        body = json.loads(base64.b64decode(answer["body"]) if answer.get("isBase64Encoded") else answer["body"])
        if expected:
            assert answer["statusCode"] == expected, answer
        else:
            assert answer["statusCode"] in (200, 503) and "status" in body, answer
        if expected >= 400:
            assert body["error"] == "NOT_FOUND", body
        if logical_id == "LiveKitTokenFunction":
            assert body["token"].count(".") == 2
        if logical_id == "LiveKitWebhookFunction":
            assert body["received"] is True
        assert "Init Duration" in box.first_report()  # it was this container's cold start


@pytest.mark.parametrize("logical_id", SCHEDULED)
def test_scheduled_function_cold_starts_and_runs_on_the_schedulers_event(logical_id, host_packages, rie, database_url,
                                                                         tmp_path):
    with sandbox(host_packages, rie, logical_id, environment(logical_id, database_url), tmp_path) as box:
        reply = box.invoke(scheduler_event(logical_id))
        assert reply.status == 200, reply
        summary = reply.json
        # A run returns its summary; a failed run is an error object (and the schedule's dead-letter queue).
        assert isinstance(summary, dict) and "errorType" not in summary, (
            summary, (tmp_path / f"{logical_id}.log").read_text()[-3000:])
        assert "Init Duration" in box.first_report()


# -- a secret that cannot be read at init (docs/deploy.md, "secrets") -----------------------------

class _DeniedSsm:
    """A loopback SSM that refuses every GetParameters as IAM does for a role without the grant."""

    def __init__(self) -> None:
        self.calls = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length", 0)))
                outer.calls += 1
                body = json.dumps({"__type": "AccessDeniedException", "message": "User is not authorized to "
                                   "perform: ssm:GetParameters"}).encode()
                self.send_response(400)
                self.send_header("content-type", "application/x-amz-json-1.1")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def with_ssm_reference(logical_id: str, database_url: str, endpoint: str) -> dict[str, str]:
    env = environment(logical_id, database_url)
    env.pop("LIVEKIT_API_SECRET")
    env.update({"LIVEKIT_API_SECRET_SSM_PARAMETER": "/rehearsal/livekit-api-secret", "AWS_ENDPOINT_URL_SSM": endpoint})
    return env


def test_a_secret_store_that_does_not_answer_at_init_answers_503_with_retry_after(host_packages, rie, database_url,
                                                                                   sql, tmp_path):
    logical_id = "LiveKitTokenFunction"
    env = with_ssm_reference(logical_id, database_url, "http://127.0.0.1:9")  # nothing listens: refused
    event, _ = http_case(logical_id, sql)
    with sandbox(host_packages, rie, logical_id, env, tmp_path) as box:
        for _ in range(2):  # the container stays up; each request asks the store again
            reply = box.invoke(event)
            assert reply.status == 200, reply
            answer = reply.json
            assert answer["statusCode"] == 503, answer
            assert answer["headers"]["retry-after"] == "5"
            assert json.loads(answer["body"])["error"] == "UNAVAILABLE"


def test_a_secret_the_role_may_not_read_fails_init_and_every_invocation(host_packages, rie, database_url, sql,
                                                                          tmp_path):
    logical_id = "LiveKitTokenFunction"
    denied = _DeniedSsm()
    try:
        env = with_ssm_reference(logical_id, database_url, denied.url)
        event, _ = http_case(logical_id, sql)
        with sandbox(host_packages, rie, logical_id, env, tmp_path) as box:
            for _ in range(2):
                reply = box.invoke(event)
                # The emulator answers 502 with the init error; a Function URL answers every
                # request 502 (docs/deploy.md), since each invocation runs the failing init again.
                assert reply.status == 502, reply
                error = reply.json
                assert error["errorType"] == "ConfigError", error
                assert "LIVEKIT_API_SECRET" in error["errorMessage"] and "AccessDeniedException" in error["errorMessage"]
                assert support.LIVEKIT_SECRET not in reply.body.decode()
        assert denied.calls >= 2
    finally:
        denied.close()


# -- bytecode: compiled for the Runtime, shipped, used on a read-only /var/task ------------------

# importlib.util.MAGIC_NUMBER of each CPython minor (Lib/importlib/_bootstrap_external.py).
MAGIC = {"3.11": 3495, "3.12": 3531, "3.13": 3571}


def test_every_shipped_module_has_bytecode_of_the_deployed_runtime(host_packages):
    version = iam.runtime().removeprefix("python")
    magic = MAGIC[version].to_bytes(2, "little") + b"\r\n"
    tag = f"cpython-{version.replace('.', '')}"
    for logical_id in (package.LAYER, *package.FUNCTIONS):
        root = host_packages / logical_id
        pycs = list(root.rglob("*.pyc"))
        modules = [p for p in root.rglob("*.py")]
        assert pycs and modules, logical_id
        for pyc in pycs:
            header = pyc.read_bytes()[:8]
            # A .pyc of another minor is silently ignored; a checked one would be re-validated
            # against the source on every start.
            assert header[:4] == magic, f"{pyc} is not bytecode for {iam.runtime()}"
            assert int.from_bytes(header[4:8], "little") == 0b01, f"{pyc} is not an unchecked-hash pyc"
        compiled = {p.parent.parent / (p.name.split(".")[0] + ".py") for p in pycs if f".{tag}." in p.name}
        left = [str(m.relative_to(root)) for m in modules if m not in compiled]
        assert not left, f"{logical_id} ships modules without bytecode: {left[:10]}"
