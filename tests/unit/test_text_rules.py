"""The string rules openapi.json states are exactly the rules the server checks (issue 13).

For each request field with a text rule, Hypothesis draws strings (whitespace,
controls, NUL, surrogates, letters) and the models' own validation must accept
exactly those the document's patterns and lengths accept, evaluated as JSON
Schema evaluates them (each `pattern` searched with `re.search`).
"""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from nexus import openapi
from shared.text_rules import STORABLE

DOC = json.loads(openapi.render())
SCHEMAS = DOC["components"]["schemas"]

# Characters where the rules differ: every kind of whitespace and control, NUL, lone surrogates.
_edges = st.sampled_from(["\x00", "\t", "\n", "\x0b", "\x0c", "\r", " ", "\x1c", "\x1f", "\x7f", "\x85", "\x9f",
                          "\xa0", "\u1680", "\u2000", "\u200a", "\u2028", "\u2029", "\u202f", "\u205f", "\u3000",
                          "\ufeff", "\u200b", "\ud800", "\udfff", "a", "Z", "é", "\U0001F680"])
texts = st.lists(_edges, max_size=12).map("".join) | st.text(max_size=12) | st.builds(
    lambda pad, core, pad2: pad + core + pad2, st.text(" \t\n", max_size=3), st.text("ab", min_size=195, max_size=205),
    st.text(" \t\n", max_size=3))


def document_accepts(schema: dict, value: str) -> bool:
    if "anyOf" in schema:
        return any(document_accepts(s, value) for s in schema["anyOf"] if s.get("type") == "string")
    if "minLength" in schema and len(value) < schema["minLength"]:
        return False
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        return False
    patterns = [schema.get("pattern")] + [s.get("pattern") for s in schema.get("allOf", [])]
    return all(re.search(p, value) for p in patterns if p)


def server_accepts(model: type, body: dict) -> bool:
    try:
        model.model_validate(body)
    except ValidationError:
        return False
    return True


FIELDS = [
    ("functions.notifications.rescue:FlareBody", "location", {"flareType": "MEDICAL"}),
    ("functions.livekit_token.app:TokenRequest", "roomName", {}),
    ("functions.livekit_token.app:TokenRequest", "participantName", {"roomName": "lobby"}),
]


@pytest.mark.parametrize("model_path,field,rest", FIELDS, ids=[f[1] for f in FIELDS])
@settings(max_examples=300, deadline=None)
@given(value=texts)
def test_a_field_is_accepted_exactly_when_the_document_allows_it(model_path, field, rest, value):
    model = openapi._model(model_path)
    schema = SCHEMAS[model.__name__]["properties"][field]
    # Strings the body decoder refuses before any model sees them (NUL, lone surrogates) are STORABLE's.
    server = STORABLE.holds(value) and server_accepts(model, {**rest, field: value})
    assert server == document_accepts(schema, value), (field, value)


def test_every_request_string_and_key_is_storable():
    def strings(schema, path):
        if isinstance(schema, dict):
            if schema.get("type") == "string" and not {"format", "enum", "const"} & schema.keys():
                patterns = [schema.get("pattern")] + [s.get("pattern") for s in schema.get("allOf", [])]
                yield path, STORABLE.pattern in patterns
            for key, sub in schema.items():
                yield from strings(sub, f"{path}.{key}")
        elif isinstance(schema, list):
            for i, sub in enumerate(schema):
                yield from strings(sub, f"{path}[{i}]")

    requests = ["TokenRequest", "WebhookEvent", "BridgeRequest", "AcademyRequest", "AcceptRequest", "SubscribeBody",
                "SubscriptionKeys", "UnsubscribeBody", "FlareBody", "_Room", "_Participant", "_Egress"]
    for name in requests:
        found = list(strings(SCHEMAS[name], name))
        assert all(ok for _, ok in found), [p for p, ok in found if not ok]
        assert SCHEMAS[name]["propertyNames"] == {"pattern": STORABLE.pattern}
        assert SCHEMAS[name]["additionalProperties"] == {"$ref": "#/components/schemas/StorableJson"}


def test_rules_the_schema_cannot_state_are_written_in_the_operation():
    bridge = DOC["paths"]["/functions/v1/net-bridge"]["post"]
    assert set(bridge["x-unstated-rules"]) == {"targetNetId"} and "targetNetId" in bridge["description"]
    subscribe = DOC["paths"]["/functions/v1/notifications-subscribe"]["post"]
    assert set(subscribe["x-unstated-rules"]) == {"endpoint", "p256dh"}
    assert "P-256 curve" in subscribe["description"]
    # The key pair: under `keys`, or at the top level (with their formats) when `keys` is absent or null.
    shapes = SCHEMAS["SubscribeBody"]["anyOf"]
    assert shapes[0]["required"] == ["keys"] and shapes[1]["required"] == ["p256dh", "auth"]


@pytest.mark.parametrize("body,valid", [
    ({"endpoint": "https://push.example.com/x", "keys": {"p256dh": "B" + "A" * 86, "auth": "A" * 22}}, True),
    ({"endpoint": "https://push.example.com/x", "p256dh": "B" + "A" * 86, "auth": "A" * 22}, True),
    ({"endpoint": "https://push.example.com/x", "p256dh": "B" + "A" * 86}, False),
    ({"endpoint": "https://push.example.com/x", "keys": None, "auth": "A" * 22}, False),
    ({"endpoint": "https://push.example.com/x", "keys": {"p256dh": "x", "auth": "A" * 22}}, False),
    ({"endpoint": "https://push.example.com/x", "p256dh": "C" + "A" * 86, "auth": "A" * 22}, False),
])
def test_the_key_shape_rule_is_the_models(body, valid):
    from functions.notifications.subscribe import SubscribeBody
    from shared.push_subscriptions import AUTH_FORMAT, P256DH_FORMAT

    p256dh, auth = body.get("keys") or body, body.get("keys") or body
    server = server_accepts(SubscribeBody, body) and P256DH_FORMAT.holds(p256dh.get("p256dh", "")) and \
        AUTH_FORMAT.holds(auth.get("auth", ""))
    assert server == valid


@pytest.mark.parametrize("created,accepted", [(10, True), (10.0, True), ("10", True), (10.5, False), (True, False),
                                              ("10.0", False), (-1, False), (None, True)])
def test_webhook_created_at_is_what_the_documents_integer_or_digits_allow(created, accepted):
    # JSON Schema's "integer" holds 10.0 (JSON does not tell it from 10), so the server takes it too.
    from shared.livekit_webhook import WebhookEvent

    assert server_accepts(WebhookEvent, {"event": "track_published", "createdAt": created}) == accepted


def test_a_trailing_newline_is_not_the_end_of_the_string():
    """JSON Schema's `$` (ECMA-262, no `m` flag) is the end of the string; Python's `$` also matches
    before a final newline. The server must refuse what the document refuses."""
    from shared.push_subscriptions import AUTH_FORMAT, ENDPOINT_CHARS, P256DH_FORMAT

    assert not ENDPOINT_CHARS.holds("https://fcm.googleapis.com/fcm/send/x\n")
    assert not AUTH_FORMAT.holds("A" * 22 + "\n")
    assert not P256DH_FORMAT.holds("BA" + "A" * 85 + "\n")
    assert ENDPOINT_CHARS.holds("https://fcm.googleapis.com/fcm/send/x") and AUTH_FORMAT.holds("A" * 22)
