"""The OpenAPI 3.1 document of every HTTP function, generated from their pydantic models.

Request and response bodies come from the models in the function modules
(`functions/*/`), errors from the shared envelope (shared/errors.py), string
rules from the rules the server checks (shared/text_rules.py, and the
STORABLE rule on every string and key of every request body), so the
document cannot drift from the code; rules JSON Schema cannot state are
written in the operation's description and listed in `x-unstated-rules`
(field -> rule), which the schemathesis test treats as the only expected
400s for schema-valid bodies: `openapi.json` at the repository root is
this module's output (`make openapi` rewrites it, a test compares them) and
`make dev` serves it at /openapi.json.

    .venv/bin/python -m nexus.openapi            # print
    .venv/bin/python -m nexus.openapi --write    # rewrite openapi.json
"""

from __future__ import annotations

import importlib
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema, models_json_schema

from shared.errors import STATUS_BY_CODE
from shared.text_rules import STORABLE, add_pattern

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "openapi.json"
PREFIX = "/functions/v1/"
REF = "#/components/schemas/{model}"

ErrorCode = Literal[tuple(STATUS_BY_CODE)]  # type: ignore[valid-type]


class ErrorEnvelope(BaseModel):
    """Every error answer: a code from the fixed list, a human sentence, optional details."""

    model_config = ConfigDict(extra="forbid")

    error: ErrorCode  # type: ignore[valid-type]
    message: str = Field(min_length=1)
    details: SkipJsonSchema[None] | dict[str, Any] = Field(
        None, description="Field-level reasons for BAD_REQUEST (`fields`), the open request for CONFLICT, ...")


# What the text of each error status means here, for readers of the document.
ERROR_TEXT = {
    400: "Malformed JSON, wrong types, missing or out-of-range fields (details.fields names them).",
    401: "Missing, malformed, expired or wrongly signed token.",
    403: "Rank too low (INSUFFICIENT_CLEARANCE) or refused for another reason (FORBIDDEN: brig, no profile).",
    404: "The thing named in the body does not exist.",
    405: "Method not supported (Allow lists the supported ones).",
    409: "The state does not allow it (details say why).",
    413: "Body over the size limit.",
    415: "Body not sent as application/json.",
    429: "Rate limited; retry after Retry-After seconds.",
    500: "Our failure; no internals in the message.",
    503: "A dependency (the database) is unavailable; retry after Retry-After seconds.",
}
SUCCESS_TEXT = {200: "OK.", 201: "Created.", 202: "Accepted: stored, delivery under way."}
HEADERS = {
    401: {"WWW-Authenticate": {"schema": {"type": "string"}}},
    405: {"Allow": {"schema": {"type": "string"}}},
    429: {"Retry-After": {"required": True, "schema": {"type": "string", "pattern": "^[0-9]+$"}}},
    503: {"Retry-After": {"schema": {"type": "string", "pattern": "^[0-9]+$"}}},
}
# Every function: a bad method, a body too large, and the two answers no client can prevent.
COMMON_ERRORS = (405, 500, 503)
MEMBER_ERRORS = (400, 401, 403, 413, 415, *COMMON_ERRORS)


@dataclass(frozen=True)
class Operation:
    function: str  # the path segment, as in nexus/registry.py
    method: str
    summary: str
    responses: dict[int, str]  # status -> "module:Model"
    request: str | None = None  # "module:Model"
    errors: tuple[int, ...] = MEMBER_ERRORS
    security: str = "memberToken"
    request_content_type: str = "application/json"
    description: str = ""
    extra_success: dict[int, str] = field(default_factory=dict)  # status -> description
    # Rules the server enforces that JSON Schema cannot state: details.fields key -> the rule.
    unstated_rules: dict[str, str] = field(default_factory=dict)


OPERATIONS: tuple[Operation, ...] = (
    Operation("livekit-token", "POST", "A LiveKit token for a voice net or a sim pod, by rank",
              {200: "functions.livekit_token.app:TokenResponse"}, "functions.livekit_token.app:TokenRequest",
              errors=(*MEMBER_ERRORS, 404)),
    Operation("livekit-webhook", "POST", "LiveKit's signed event: stored, then applied",
              {200: "functions.livekit_webhook.app:WebhookAck"}, "shared.livekit_webhook:WebhookEvent",
              errors=(400, 401, 413, *COMMON_ERRORS), security="livekitSignature",
              request_content_type="application/webhook+json",
              description="`Authorization` is LiveKit's bare JWT (HS256, issuer = API key) whose `sha256` claim "
                          "is the base64 SHA-256 of the raw body."),
    Operation("net-bridge", "POST", "Link or unlink two voice nets (founder+)",
              {200: "functions.net_bridge.app:BridgeRow", 201: "functions.net_bridge.app:BridgeRow"},
              "functions.net_bridge.app:BridgeRequest", errors=(*MEMBER_ERRORS, 404),
              extra_success={200: "An existing bridge (link) or the removed one (unlink).",
                             201: "A new bridge."},
              unstated_rules={"targetNetId": "must differ from sourceNetId (a net cannot be bridged to itself)."}),
    Operation("academy-request", "POST", "Ask for a guide in a skill",
              {201: "functions.academy.request:AcademyRequestCreated"}, "functions.academy.request:AcademyRequest",
              errors=(*MEMBER_ERRORS, 404, 409, 429)),
    Operation("academy-accept", "POST", "A certified guide accepts a pending request and opens a sim pod",
              {200: "functions.academy.accept:AcceptResponse"}, "functions.academy.accept:AcceptRequest",
              errors=(*MEMBER_ERRORS, 404, 409)),
    Operation("notifications-subscribe", "POST", "Store the caller's browser push subscription",
              {200: "functions.notifications.subscribe:Subscribed"}, "functions.notifications.subscribe:SubscribeBody",
              description="`{endpoint, auth, p256dh}`, or a browser PushSubscription JSON "
                          "`{endpoint, expirationTime, keys: {p256dh, auth}}`. The `endpoint` pattern "
                          "(`https://`) is the rule of a deployed stack; a local stack (`NEXUS_ENV=dev`, `make "
                          "dev`) also accepts `http://` to a loopback address (127.0.0.0/8, ::1, localhost, *.localhost), so a "
                          "browser can subscribe against a local push service.",
              unstated_rules={
                  "endpoint": "the https:// URL (the schema's pattern) of a public push service: its host is a valid "
                              "public DNS name (not localhost, not *.local, *.internal or another internal suffix, "
                              "not a single label) or a public IP address (not loopback, private, link-local or "
                              "reserved, including IPv4 spelled as a number or embedded in IPv6), on port 443 if "
                              "one is given, without user information or a fragment.",
                  "p256dh": "the key (at the top level or under keys) must be a point on the P-256 curve."}),
    Operation("notifications-subscribe", "DELETE", "Remove one of the caller's push subscriptions",
              {200: "functions.notifications.subscribe:Unsubscribed"},
              "functions.notifications.subscribe:UnsubscribeBody"),
    Operation("handle-rescue-request", "POST", "Launch a rescue flare to every medic and rescuer (scout+)",
              {202: "functions.notifications.rescue:FlareLaunched"}, "functions.notifications.rescue:FlareBody",
              errors=(*MEMBER_ERRORS, 429)),
    Operation("member-admin", "POST", "Change a member's rank and roles, audited; LiveKit follows (founder+)",
              {200: "functions.member_admin.app:MemberChanged"}, "functions.member_admin.app:MemberChange",
              errors=(*MEMBER_ERRORS, 404),
              unstated_rules={
                  "roles": "a role cannot be both added and removed (names compare case-insensitively, `brig` is "
                           "`brigged`)."},
              description="Only members strictly below the caller, never to the caller's rank or above, never "
                          "oneself; a brigged caller changes nothing. Role names match case-insensitively and are "
                          "stored as `brigged`, `Medic`, `Rescue` (`brig` is `brigged`) or as first written. The "
                          "change is applied to LiveKit before the answer when it can be within the inline budget "
                          "(`livekit.pending` false); otherwise the schedule applies it."),
    Operation("health", "GET", "Database, migration contract, LiveKit and configuration status",
              {200: "functions.health.app:HealthReport"}, errors=(401, 403, *COMMON_ERRORS),
              security="memberTokenOrServiceKey",
              description="A founder's (or higher) access token, or the service role key. 503 carries the "
                          "same parts under `details` when the database is down."),
)

SECURITY_SCHEMES = {
    "memberToken": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                    "description": "A Supabase access token (the signed-in member)."},
    "memberTokenOrServiceKey": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                                "description": "A founder's Supabase access token, or the service role key."},
    "livekitSignature": {"type": "apiKey", "in": "header", "name": "Authorization",
                         "description": "LiveKit's webhook JWT, signed with the API key pair's secret."},
}


def _model(path: str) -> type[BaseModel]:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def _error_schema(status: int) -> dict[str, Any]:
    codes = sorted(c for c, s in STATUS_BY_CODE.items() if s == status)
    return {"allOf": [{"$ref": REF.format(model="ErrorEnvelope")},
                      {"properties": {"error": {"enum": codes}}}]}


def _version() -> str:
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def document() -> dict[str, Any]:
    """The whole OpenAPI document, deterministic for the same code."""
    wanted: list[tuple[type[BaseModel], Literal["validation", "serialization"]]] = [(ErrorEnvelope, "serialization")]
    for op in OPERATIONS:
        if op.request:
            wanted.append((_model(op.request), "validation"))
        wanted += [(_model(m), "serialization") for m in op.responses.values()]
    wanted = list(dict.fromkeys(wanted))
    refs, top = models_json_schema(wanted, ref_template=REF)
    components = dict(sorted(top.get("$defs", {}).items()))
    request_models = {refs[(_model(op.request), "validation")]["$ref"].rsplit("/", 1)[-1]
                      for op in OPERATIONS if op.request}
    for name in _reachable(components, request_models):
        _state_storable(components[name])
    components[STORABLE_JSON] = _storable_json()
    components = dict(sorted(components.items()))

    def ref(path: str, mode: str) -> dict[str, Any]:
        return refs[(_model(path), mode)]

    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        responses: dict[str, Any] = {}
        for status, model in sorted(op.responses.items()):
            responses[str(status)] = {
                "description": op.extra_success.get(status, SUCCESS_TEXT[status]),
                "content": {"application/json": {"schema": ref(model, "serialization")}},
            }
        for status in sorted(set(op.errors)):
            answer: dict[str, Any] = {"description": ERROR_TEXT[status],
                                      "content": {"application/json": {"schema": _error_schema(status)}}}
            if status in HEADERS:
                answer["headers"] = HEADERS[status]
            responses[str(status)] = answer
        operation: dict[str, Any] = {
            "operationId": f"{op.function.replace('-', '_')}_{op.method.lower()}",
            "summary": op.summary,
            "tags": [op.function],
            "security": [{op.security: []}],
            "responses": responses,
        }
        description = op.description
        if op.unstated_rules:
            description = (description + "\n\n" if description else "") + (
                "Rules this document cannot state as schema; a body breaking one is refused with 400 "
                "BAD_REQUEST whose `details.fields` names the field:\n"
                + "\n".join(f"- `{name}`: {rule}" for name, rule in op.unstated_rules.items()))
            operation["x-unstated-rules"] = dict(op.unstated_rules)
        if description:
            operation["description"] = description
        if op.request:
            operation["requestBody"] = {"required": True,
                                        "content": {op.request_content_type: {"schema": ref(op.request, "validation")}}}
        paths.setdefault(PREFIX + op.function, {})[op.method.lower()] = operation

    return {
        "openapi": "3.1.0",
        "info": {
            "title": "NomadNexus functions",
            "version": _version(),
            "description": "The privileged backend of NomadNexus. Locally (`make dev`) every function is served "
                           "under /functions/v1/<name>; deployed, each function has its own Lambda Function URL "
                           "and answers at its root. Errors always use the ErrorEnvelope.",
        },
        "servers": [{"url": "http://127.0.0.1:8787", "description": "make dev"}],
        "paths": dict(sorted(paths.items())),
        "components": {"schemas": components, "securitySchemes": SECURITY_SCHEMES},
    }


STORABLE_JSON = "StorableJson"


def _storable_json() -> dict[str, Any]:
    ref = {"$ref": REF.format(model=STORABLE_JSON)}
    return {
        "description": "Any JSON value whose strings and object keys hold no NUL character and no unpaired "
                       "surrogate: the server refuses a body with one anywhere (PostgreSQL cannot store it), "
                       "even in a field it otherwise ignores.",
        "anyOf": [{"type": "string", "pattern": STORABLE.pattern},
                  {"type": ["number", "boolean", "null"]},
                  {"type": "array", "items": ref},
                  {"type": "object", "propertyNames": {"pattern": STORABLE.pattern}, "additionalProperties": ref}],
    }


def _reachable(components: dict[str, Any], roots: set[str]) -> list[str]:
    """Component names reachable from `roots` through $ref."""
    seen: list[str] = []
    todo = sorted(roots)
    while todo:
        name = todo.pop()
        if name in seen or name not in components:
            continue
        seen.append(name)
        text = json.dumps(components[name])
        todo += [r.rsplit("/", 1)[-1] for r in _REFS.findall(text)]
    return sorted(seen)


def _state_storable(model: dict[str, Any]) -> None:
    """STORABLE on every string of a request model, and on keys and values it does not name."""
    if model.get("type") == "object" and model.get("additionalProperties") is not False:
        model["propertyNames"] = {"pattern": STORABLE.pattern}
        model["additionalProperties"] = {"$ref": REF.format(model=STORABLE_JSON)}

    def walk(schema: Any) -> None:
        if isinstance(schema, list):
            for item in schema:
                walk(item)
            return
        if not isinstance(schema, dict):
            return
        if schema.get("type") == "string" and not {"format", "enum", "const"} & schema.keys():
            add_pattern(schema, STORABLE.pattern)
        for sub in (schema.get("properties") or {}).values():
            walk(sub)
        for key in ("items", "anyOf", "oneOf", "allOf", "if", "then", "else"):
            if key in schema:
                walk(schema[key])

    walk(model)


_REFS = re.compile(r'"\$ref": "(#/components/schemas/[^"]+)"')


def render(doc: dict[str, Any] | None = None) -> str:
    return json.dumps(doc if doc is not None else document(), indent=2, sort_keys=False) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--write" in argv:
        SHIPPED.write_text(text)
        print(f"wrote {SHIPPED.relative_to(ROOT)}")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
