"""openapi.json is what the code generates, and describes every HTTP function."""

from __future__ import annotations

import json

from nexus import openapi, registry
from shared.errors import STATUS_BY_CODE


def test_shipped_document_equals_the_generated_one():
    # When this fails: `make openapi` and commit openapi.json.
    assert openapi.SHIPPED.read_text() == openapi.render()


def test_every_http_function_is_documented():
    paths = json.loads(openapi.render())["paths"]
    assert {p.removeprefix(openapi.PREFIX) for p in paths} == set(registry.HTTP_FUNCTIONS)


def test_every_error_answer_is_the_envelope_with_the_codes_of_its_status():
    doc = openapi.document()
    for path, methods in doc["paths"].items():
        for method, op in methods.items():
            for status, answer in op["responses"].items():
                if int(status) < 400:
                    continue
                schema = answer["content"]["application/json"]["schema"]
                assert schema["allOf"][0] == {"$ref": "#/components/schemas/ErrorEnvelope"}, (path, method)
                codes = set(schema["allOf"][1]["properties"]["error"]["enum"])
                assert codes == {c for c, s in STATUS_BY_CODE.items() if s == int(status)}, (path, method, status)
    envelope = doc["components"]["schemas"]["ErrorEnvelope"]
    assert envelope["required"] == ["error", "message"] and envelope["additionalProperties"] is False
