"""Rules on the strings clients send, each defined once.

A rule is a regular expression that the server checks with Python's `re`
and that openapi.json states as the JSON Schema `pattern` of the strings it
applies to (the same text: nexus/openapi.py reads it from here), so a client
generated from the document does not send what the server refuses. Patterns
are written in the subset ECMA-262 (with the `u` flag, as JSON Schema
validators use it) and Python agree on: explicit character classes, \\uXXXX
escapes, no \\s or \\w (whose sets differ between the two).

Use as a pydantic annotation, after the field's constraints:

    location: Annotated[str, Field(min_length=1, max_length=200), NOT_BLANK, NO_CONTROL]

and the field is checked (a 400 naming it) and documented with the pattern.
Rules other code checks itself (decode_json's STORABLE, the push
subscription's key formats) call `holds()` on the same object.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

# Unicode White_Space: what pydantic's str_strip_whitespace (Rust's trim) strips.
# Not Python's str.isspace(), which adds \x1c-\x1f.
WHITESPACE = "\\t\\n\\u000b\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000"
# Unicode category Cc: C0 controls, DEL and C1 controls.
CONTROL = "\\u0000-\\u001f\\u007f-\\u009f"


@dataclass(frozen=True)
class TextRule:
    name: str
    pattern: str  # searched, as JSON Schema does: anchor it to constrain the whole string
    message: str  # what a refused value is told (details.fields)
    _regex: re.Pattern = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # ECMA-262's `$` (no `m` flag) is the end of the string; Python's also matches
        # before a final newline, which would let "value\n" by: \Z is the ECMA `$`.
        object.__setattr__(self, "_regex", re.compile(re.sub(r"(?<!\\)\$", r"\\Z", self.pattern)))

    def holds(self, value: str) -> bool:
        return self._regex.search(value) is not None

    def check(self, value: Any) -> Any:
        if isinstance(value, str) and not self.holds(value):
            raise ValueError(self.message)
        return value

    # -- pydantic ---------------------------------------------------------------

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> Any:
        from pydantic_core import core_schema

        return core_schema.no_info_after_validator_function(self.check, handler(source))

    def __get_pydantic_json_schema__(self, schema: Any, handler: Any) -> dict[str, Any]:
        out = handler(schema)
        add_pattern(handler.resolve_ref_schema(out), self.pattern)
        return out


def add_pattern(schema: dict[str, Any], pattern: str) -> None:
    """State one more pattern on a string schema (JSON Schema allows one `pattern` per schema)."""
    if schema.get("pattern") in (None, pattern):
        schema["pattern"] = pattern
    elif {"pattern": pattern} not in schema.setdefault("allOf", []):
        schema["allOf"].append({"pattern": pattern})


# Every string in every JSON body (and every object key): PostgreSQL's text and
# jsonb cannot hold NUL, and UTF-8 cannot encode an unpaired surrogate.
STORABLE = TextRule("storable", "^[^\\u0000\\ud800-\\udfff]*$",
                    "must not contain a NUL character or an unpaired surrogate")


class Stripped:
    """Text of 1 to `max_length` characters once surrounding whitespace is stripped.

    For the models with str_strip_whitespace: the server counts characters
    after stripping, while JSON Schema's minLength/maxLength count the string
    as sent, so the document states the rule as a pattern instead of them
    (and a string of whitespace only is refused: nothing is left). The same
    pattern checks the value here.

        roomName: Annotated[str, Stripped(128)]
    """

    def __init__(self, max_length: int):
        if max_length < 2:
            raise ValueError("max_length must be at least 2")
        self.max_length = max_length
        self.rule = TextRule(
            f"stripped-1-{max_length}",
            f"^[{WHITESPACE}]*[^{WHITESPACE}](?:[\\s\\S]{{0,{max_length - 2}}}[^{WHITESPACE}])?[{WHITESPACE}]*$",
            f"must be 1 to {max_length} characters, not counting surrounding whitespace")

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> Any:
        return self.rule.__get_pydantic_core_schema__(source, handler)

    def __get_pydantic_json_schema__(self, schema: Any, handler: Any) -> dict[str, Any]:
        out = handler(schema)
        target = handler.resolve_ref_schema(out)
        target.pop("minLength", None)
        target.pop("maxLength", None)
        add_pattern(target, self.rule.pattern)
        return out

# No control characters once surrounding whitespace is stripped: the leading
# and trailing whitespace a client may send (tabs, newlines) is stripped first.
NO_CONTROL = TextRule("no-control", f"^[{WHITESPACE}]*[^{CONTROL}]*[{WHITESPACE}]*$",
                      "must not contain control characters")
