"""schemathesis against the local stack: every operation in openapi.json, fuzzed and checked.

Runs `nexus dev` as a subprocess on free ports with its own data directory
(like test_dev_stack.py), loads the document the gateway serves at
/openapi.json, and sends schemathesis' generated requests (valid and invalid
bodies, wrong types, missing auth) with a founder's token from that stack;
LiveKit webhooks are signed over the exact bytes sent, with the stack's key
pair, so fuzzed events reach parsing and storage rather than stopping at the
signature. Every answer must be no 5xx, a documented status, and a body and
headers matching the document (error answers: the envelope with a code of
that status); a body the document allows must be accepted (2xx, or 404 /
409 / 429 for ids and states the fuzzer cannot know), or refused with 400
only for a rule the operation lists in `x-unstated-rules`. Then one well-formed request per operation, on the demo data,
checks the success bodies the fuzzer rarely reaches.

NEXUS_SCHEMATHESIS_EXAMPLES sets the example count per operation (default 100).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
import urllib.request
import uuid

import jwt
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings

from tests.e2e.devstack import ROOT, demo_token, running_dev_stack

EXAMPLES = int(os.environ.get("NEXUS_SCHEMATHESIS_EXAMPLES", "100"))


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with running_dev_stack(tmp_path_factory.mktemp("schemathesis-stack")) as stack:
        yield stack


def _token(stack, *args: str) -> str:
    return demo_token(stack, *args)


@pytest.fixture(scope="module")
def founder(stack) -> str:
    return _token(stack, "--rank", "founder")


class LiveKitSignature(requests.auth.AuthBase):
    """Signs the body exactly as sent, as LiveKit does (sha256 claim, HS256 with the API secret)."""

    PLACEHOLDER = "livekit-signature"

    def __init__(self, key: str, secret: str):
        self.key, self.secret = key, secret

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        # Only a request that carries the placeholder is signed: schemathesis' own probes that drop
        # the header must reach the function without one.
        if r.headers.get("Authorization") != self.PLACEHOLDER:
            return r
        body = r.body or b""
        if isinstance(body, str):
            body = body.encode()
        now = int(time.time())
        r.headers["Authorization"] = jwt.encode(
            {"iss": self.key, "sub": "", "nbf": now, "exp": now + 600,
             "sha256": base64.b64encode(hashlib.sha256(body).digest()).decode()},
            self.secret, algorithm="HS256")
        return r


# Every check schemathesis has runs: call_and_validate runs all its built-in checks (none is turned off
# here), plus only_unstated_refusals. (max_response_time is not a check but a limit, left unset: no
# clocks in tests, timing lives in bench/. The stateful checks, use_after_free and
# ensure_resource_availability, act only in stateful runs, which need OpenAPI links the document has none of.) What they may see beyond the document is listed below, each with
# the reason JSON Schema cannot state it; openapi.json lists the per-field rules in `x-unstated-rules`.
#
# positive_data_acceptance: a body the document allows is accepted (2xx), or refused only with
ALLOWED_REFUSALS = {
    400: "a rule in the operation's `x-unstated-rules` and nothing else (a field compared with another, a "
         "P-256 point, a public push host): only_unstated_refusals holds the 400 to details.fields; or an "
         "object key breaking STORABLE, stated as `propertyNames`, which the generator does not honour",
    404: "an id that names nothing: which ids exist is state, not schema (the fuzzer's uuids name nothing)",
    409: "the state does not allow it (a request already open, a pod already taken)",
    413: "the byte limit on the whole body: no JSON Schema keyword bounds a document's size in bytes",
    429: "a rate limit (the flare's, once one flare went out): how often, not what",
}
# negative_data_rejection: a body the document forbids is refused with one of the refusal statuses
# (a 4xx the operation documents), except
DEV_ONLY_ACCEPTANCE = (
    "notifications-subscribe `endpoint`: the document states a deployed stack's rule (https://); this test "
    "runs a local stack (NEXUS_ENV=dev), which also accepts http:// to a loopback address, as the "
    "operation's description says")
REFUSALS = [400, 401, 403, 404, 405, 409, 413, 415, 429]
CONFIG = schemathesis.Config.from_dict({"checks": {
    "negative_data_rejection": {"expected-statuses": REFUSALS},
    "positive_data_acceptance": {"expected-statuses": ["2XX", *ALLOWED_REFUSALS]},
}})
# The shipped document, loaded at collection (schemathesis' lazy fixture loader does not run on
# pytest 9); test_the_stack_serves_the_shipped_document holds it equal to what the stack serves.
schema = schemathesis.openapi.from_path(ROOT / "openapi.json", config=CONFIG)


def _document_allows(case) -> bool:
    """False for a body breaking the document's STORABLE pattern in a key: the generator does not honour
    `propertyNames` (and a value under a generated key may then be anything)."""
    from shared.text_rules import STORABLE

    stack = [case.body]
    while stack:
        item = stack.pop()
        if isinstance(item, str) and not STORABLE.holds(item):
            return False
        if isinstance(item, dict):
            stack += [*item.keys(), *item.values()]
        elif isinstance(item, list):
            stack += item
    return True


def only_unstated_refusals(ctx, response, case):
    """A schema-valid body refused with 400 must break a rule the operation lists in `x-unstated-rules`
    (written in its description: what JSON Schema cannot state), and nothing else."""
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive or response.status_code != 400:
        return None
    if not _document_allows(case):
        return None  # not a body the document allows (see _document_allows)
    allowed = case.operation.definition.raw.get("x-unstated-rules") or {}
    try:
        fields = set((response.json().get("details") or {}).get("fields") or {})
    except ValueError:
        fields = set()
    assert fields and fields <= set(allowed), (
        f"{case.operation.label} refused a body its schema allows, for {sorted(fields) or response.text!r}; "
        f"only {sorted(allowed)} are documented as rules the schema cannot state")
    return None


def _dev_only_endpoint(case) -> bool:
    """True for a subscribe body whose endpoint only a dev stack accepts (see DEV_ONLY_ACCEPTANCE)."""
    from shared.push_subscriptions import InvalidSubscription, validate_endpoint

    body = case.body
    if not (case.path.endswith("/notifications-subscribe") and isinstance(body, dict)
            and isinstance(body.get("endpoint"), str)):
        return False
    try:
        validate_endpoint(body["endpoint"], dev_mode=True)
    except InvalidSubscription:
        return False
    try:
        validate_endpoint(body["endpoint"], dev_mode=False)
    except InvalidSubscription:
        return True
    return False


def negative_data_rejection_but_dev_endpoints(ctx, response, case):
    """schemathesis' negative_data_rejection, except DEV_ONLY_ACCEPTANCE."""
    from schemathesis.specs.openapi.checks import negative_data_rejection

    if _dev_only_endpoint(case):
        return None
    return negative_data_rejection(ctx, response, case)


@pytest.fixture(scope="module")
def api_schema():
    return schema


def _call_kwargs(case, stack, founder) -> dict:
    if case.path.endswith("/livekit-webhook"):
        return {"auth": LiveKitSignature(stack["dev"]["LIVEKIT_API_KEY"], stack["dev"]["LIVEKIT_API_SECRET"]),
                "headers": {"Authorization": LiveKitSignature.PLACEHOLDER}}
    return {"headers": {"Authorization": f"Bearer {founder}"}}


# Every check, positive_data_acceptance included: openapi.json states every rule JSON Schema can
# express (shared/text_rules.py and the models), so what it allows is accepted.
@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_answers_as_documented(case, stack, founder):
    from schemathesis.specs.openapi.checks import negative_data_rejection

    case.call_and_validate(base_url=stack["origin"], timeout=30, excluded_checks=[negative_data_rejection],
                           additional_checks=[only_unstated_refusals, negative_data_rejection_but_dev_endpoints],
                           **_call_kwargs(case, stack, founder))


def test_every_check_runs_and_each_allowance_is_named():
    """No built-in check is turned off; the only statuses allowed beyond 2xx for a valid body are the named
    ones, and every operation's unstated rules are written in its description."""
    from schemathesis.checks import CHECKS, load_all_checks

    load_all_checks()
    config = schema.config.checks_config_for(operation=None, phase=None)
    assert [c.__name__ for c in CHECKS.get_all() if not config.get_by_name(name=c.__name__).enabled] == []
    assert set(config.positive_data_acceptance.expected_statuses) == {"2XX", *map(str, ALLOWED_REFUSALS)}
    for path, methods in json.loads((ROOT / "openapi.json").read_text())["paths"].items():
        for method, op in methods.items():
            for name, rule in (op.get("x-unstated-rules") or {}).items():
                assert f"- `{name}`: {rule}" in op["description"], (path, method, name)


def test_the_stack_serves_the_shipped_document(stack):
    with urllib.request.urlopen(f"{stack['origin']}/openapi.json", timeout=10) as resp:
        served = resp.read().decode()
    assert json.loads(served) == json.loads((ROOT / "openapi.json").read_text())


# --- success bodies ---------------------------------------------------------------------------

def _p256dh() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    point = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    return base64.urlsafe_b64encode(point).rstrip(b"=").decode()


def test_success_answers_match_the_document(stack, founder, api_schema):
    """Given the demo data, when each operation is called as a client would, then its documented success
    status comes back with a body that matches the document."""
    import psycopg

    from nexus.seed import DEMO_SKILL_ID

    with psycopg.connect(stack["dev"]["DATABASE_URL"], autocommit=True) as conn:
        nets = dict(conn.execute("SELECT code, id::text FROM public.voice_nets WHERE code IN ('lobby', 'ops')"))
    scout, guide = _token(stack, "--rank", "scout"), _token(stack, "--user", "guide")
    endpoint = f"http://127.0.0.1:9/push/{uuid.uuid4().hex}"  # dev mode accepts loopback http endpoints
    room = f"schemathesis-{uuid.uuid4().hex[:8]}"
    event = {"event": "participant_joined", "id": f"EV_{uuid.uuid4().hex}", "createdAt": str(int(time.time())),
             "room": {"sid": "RM_s", "name": room},
             "participant": {"sid": f"PA_{uuid.uuid4().hex[:10]}", "identity": "schemathesis"}}
    signer = LiveKitSignature(stack["dev"]["LIVEKIT_API_KEY"], stack["dev"]["LIVEKIT_API_SECRET"])
    bridge = {"sourceNetId": nets["lobby"], "targetNetId": nets["ops"]}
    calls = [
        ("/functions/v1/livekit-token", "POST", founder, {"roomName": "test-room", "participantName": "Fuzz"}, {200}),
        ("/functions/v1/net-bridge", "POST", founder, {**bridge, "action": "link"}, {200, 201}),
        ("/functions/v1/livekit-token", "POST", founder, {"roomName": "lobby"}, {200}),
        ("/functions/v1/net-bridge", "POST", founder, {**bridge, "action": "unlink"}, {200}),
        ("/functions/v1/academy-request", "POST", scout, {"skillId": DEMO_SKILL_ID}, {201}),
        ("/functions/v1/notifications-subscribe", "POST", scout,
         {"endpoint": endpoint, "expirationTime": None, "keys": {"p256dh": _p256dh(), "auth": "A" * 22}}, {200}),
        ("/functions/v1/notifications-subscribe", "DELETE", scout, {"endpoint": endpoint}, {200}),
        ("/functions/v1/handle-rescue-request", "POST", scout, {"location": "Stanton", "flareType": "MEDICAL"}, {202}),
        ("/functions/v1/handle-rescue-request", "POST", scout, {"location": "Stanton", "flareType": "MEDICAL"}, {429}),
        ("/functions/v1/health", "GET", founder, None, {200}),
        ("/functions/v1/livekit-webhook", "POST", None, event, {200}),
    ]
    request_id = None
    for path, method, token, body, expected in calls:
        if path.endswith("academy-accept"):
            continue
        operation = api_schema[path][method]
        case = operation.Case(body=body) if body is not None else operation.Case()
        kwargs = ({"auth": signer, "headers": {"Authorization": signer.PLACEHOLDER}} if token is None
                  else {"headers": {"Authorization": f"Bearer {token}"}})
        response = case.call_and_validate(base_url=stack["origin"], timeout=30, **kwargs)
        assert response.status_code in expected, (path, method, response.status_code, response.text)
        if path.endswith("academy-request"):
            request_id = response.json()["requestId"]

    # The guide accepts the scout's request: a sim pod and the guide's token.
    case = api_schema["/functions/v1/academy-accept"]["POST"].Case(body={"requestId": request_id})
    response = case.call_and_validate(base_url=stack["origin"], timeout=30,
                                      headers={"Authorization": f"Bearer {guide}"})
    assert response.status_code == 200, response.text
