"""Text that one member writes and others see, defined once.

Callsigns, flare locations and whatever else a member writes that reaches
another member (LiveKit names, push titles and bodies, academy
notifications) must not carry characters that change how the text around
them looks: control characters, Unicode format characters (category Cf:
bidi overrides such as U+202E, zero-width characters) and line or paragraph
separators. Nor may such text be only whitespace, of any kind, or only
characters that draw as nothing.

The same rule runs in three places, all built from the ranges below:
- Python validation (`problem`, `shown_text`, the `ShownText` type);
- the database, `public.text_is_shown_plainly(text)` in the migration
  20251216000100_guests_text_rules_functions.sql, whose regular expression
  is `pattern("postgres")` character for character;
- OpenAPI: `ShownText` fields carry `pattern("jsonschema")` (with the
  surrounding whitespace the models strip), so a generated client is told.
tests/text_cases.py is the one set of cases run against Python and the
database; tests/integration/test_text_rules.py also compares both around
every range boundary (on every code point in the slow suite).

Callsigns are also compared (`callsigns_clash`): two are the same callsign
when their `callsign_key` is equal (what draws as nothing removed, NFKC,
White_Space trimmed and collapsed to one space, then simple case folding and
NFKC again: Unicode's NFKC_Casefold, with simple folding), and one passes for
the other when their `callsign_skeleton_key` is equal (UTS #39's confusable
skeleton of the unfolded text, then the same folding: shared/confusables.py).
The folding is a frozen table (shared/casefold.py) rather than lower() or
casefold(), whose results depend on the database's locale or the Python
version.

The ranges are frozen (Unicode 15.1) for the same reason: `unicodedata`
and PostgreSQL each know some Unicode version, not necessarily the same.
"""

from __future__ import annotations

import unicodedata
from typing import Annotated, Any, Literal

Ranges = tuple[tuple[int, int], ...]

# Category Cc. NUL can never reach the database (text refuses it), but
# Python strings can hold it.
CONTROL: Ranges = ((0x0000, 0x001F), (0x007F, 0x009F))
# Category Cf as of Unicode 15.1.
FORMAT: Ranges = (
    (0x00AD, 0x00AD), (0x0600, 0x0605), (0x061C, 0x061C), (0x06DD, 0x06DD), (0x070F, 0x070F),
    (0x0890, 0x0891), (0x08E2, 0x08E2), (0x180E, 0x180E), (0x200B, 0x200F), (0x202A, 0x202E),
    (0x2060, 0x2064), (0x2066, 0x206F), (0xFEFF, 0xFEFF), (0xFFF9, 0xFFFB), (0x110BD, 0x110BD),
    (0x110CD, 0x110CD), (0x13430, 0x1343F), (0x1BCA0, 0x1BCA3), (0x1D173, 0x1D17A),
    (0xE0001, 0xE0001), (0xE0020, 0xE007F),
)
# Categories Zl and Zp.
SEPARATORS: Ranges = ((0x2028, 0x2029),)
FORBIDDEN: Ranges = CONTROL + FORMAT + SEPARATORS

# Whitespace of any kind (Unicode's White_Space property) and the characters
# that draw as nothing (Hangul fillers, the blank braille pattern). Allowed
# between words; a string of nothing else is refused.
BLANK: Ranges = (
    (0x0009, 0x000D), (0x0020, 0x0020), (0x0085, 0x0085), (0x00A0, 0x00A0), (0x115F, 0x1160),
    (0x1680, 0x1680), (0x2000, 0x200A), (0x2028, 0x2029), (0x202F, 0x202F), (0x205F, 0x205F),
    (0x2800, 0x2800), (0x3000, 0x3000), (0x3164, 0x3164), (0xFFA0, 0xFFA0),
)

# Default_Ignorable_Code_Point (Unicode 15.1 DerivedCoreProperties.txt) less
# what FORMAT already forbids: the combining grapheme joiner, the Hangul
# fillers, Khmer inherent vowels, Mongolian and other variation selectors
# (VS16 asks for emoji presentation), and the reserved default-ignorables.
# Allowed inside text, but they draw as nothing: they do not count as
# something visible, and callsign_key removes them, so "Ace\ufe0f" is "Ace".
IGNORABLE: Ranges = (
    (0x034F, 0x034F), (0x115F, 0x1160), (0x17B4, 0x17B5), (0x180B, 0x180D), (0x180F, 0x180F),
    (0x2065, 0x2065), (0x3164, 0x3164), (0xFE00, 0xFE0F), (0xFFA0, 0xFFA0), (0xFFF0, 0xFFF8),
    (0xE0000, 0xE0000), (0xE0002, 0xE001F), (0xE0080, 0xE0FFF),
)
# The format characters that are default-ignorable too (soft hyphen, bidi
# marks and overrides, zero-width joiners, tags, ...). New text may not carry
# them, but callsigns from before the rule may: the key drops them as well,
# so an old "Ace\u200d" is the same callsign as "Ace" (LiveKit shows both alike).
IGNORABLE_FORMAT: Ranges = (
    (0x00AD, 0x00AD), (0x061C, 0x061C), (0x180E, 0x180E), (0x200B, 0x200F), (0x202A, 0x202E),
    (0x2060, 0x2064), (0x2066, 0x206F), (0xFEFF, 0xFEFF), (0x1BCA0, 0x1BCA3), (0x1D173, 0x1D17A),
    (0xE0001, 0xE0001), (0xE0020, 0xE007F),
)
# Every Default_Ignorable_Code_Point: what callsign_key removes.
DEFAULT_IGNORABLE: Ranges = IGNORABLE + IGNORABLE_FORMAT
# What a string must have more than: whitespace and what draws as nothing.
INVISIBLE: Ranges = BLANK + IGNORABLE

Dialect = Literal["python", "postgres", "ecma", "jsonschema"]


def _escape(cp: int, dialect: Dialect) -> str:
    if cp <= 0xFFFF:
        return f"\\u{cp:04x}"
    if dialect == "jsonschema":
        # JSON Schema validators run the pattern with ECMA-262's `u` flag (ajv)
        # or Python's re (schemathesis, jsonschema): \\u{...} is ECMA only and
        # \\U Python only, but the character itself is one code point in both.
        return chr(cp)
    return f"\\u{{{cp:x}}}" if dialect == "ecma" else f"\\U{cp:08x}"


def char_class(ranges: Ranges, *, negate: bool = False, dialect: Dialect = "python") -> str:
    """A bracket expression matching one character in `ranges` (or, negated, not in them).

    python and postgres (ARE) spell it identically (\\uXXXX, \\UXXXXXXXX);
    ecma uses \\u{...} for code points beyond the BMP (the regex `u` flag).
    PostgreSQL text cannot hold NUL, and its regex refuses \\u0000, so that
    range starts at U+0001 there.
    """
    parts = []
    for lo, hi in ranges:
        if dialect == "postgres" and lo == 0:
            lo = 1
        parts.append(_escape(lo, dialect) if lo == hi else f"{_escape(lo, dialect)}-{_escape(hi, dialect)}")
    return "[" + ("^" if negate else "") + "".join(parts) + "]"


def pattern(dialect: Dialect = "python") -> str:
    """The whole rule as one anchored regular expression: nothing forbidden, something visible."""
    allowed = char_class(FORBIDDEN, negate=True, dialect=dialect)
    visible = char_class(FORBIDDEN + INVISIBLE, negate=True, dialect=dialect)
    return f"^{allowed}*{visible}{allowed}*$"


def _characters(ranges: Ranges) -> frozenset[str]:
    return frozenset(chr(cp) for lo, hi in ranges for cp in range(lo, hi + 1))


# Sets rather than compiled patterns: a few hundred characters, and no
# regex compile on the cold-start path of the functions that validate.
_FORBIDDEN = _characters(FORBIDDEN)
_INVISIBLE = _characters(INVISIBLE)
# str.translate table: delete every default-ignorable (about 4000 entries,
# built on first use; only where callsigns are compared).
_REMOVE_IGNORABLE: dict[int, None] | None = None


def problem(text: str) -> str | None:
    """Why others must not be shown `text`, or None when it is fine."""
    for ch in text:
        if ch in _FORBIDDEN:
            return (f"must not contain U+{ord(ch):04X}: control, format (such as bidi or zero-width) "
                    "and line or paragraph separator characters are not allowed")
    if all(ch in _INVISIBLE for ch in text):
        return "must contain more than whitespace and invisible characters"
    return None


def shown_text(value: str) -> str:
    """pydantic validator: refuse text that others must not be shown."""
    reason = problem(value)
    if reason:
        raise ValueError(reason)
    return value


class _Shown:
    """pydantic: check with `shown_text`; openapi.json states the same rule as a pattern."""

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> Any:
        from pydantic_core import core_schema

        return core_schema.no_info_after_validator_function(shown_text, handler(source))

    def __get_pydantic_json_schema__(self, schema: Any, handler: Any) -> dict[str, Any]:
        from shared.text_rules import WHITESPACE, add_pattern

        out = handler(schema)
        # The models strip surrounding whitespace before checking; a client sends it unstripped.
        inner = pattern("jsonschema")[1:-1]
        add_pattern(handler.resolve_ref_schema(out), f"^[{WHITESPACE}]*{inner}[{WHITESPACE}]*$")
        return out


# A str field whose value other members will see.
ShownText = Annotated[str, _Shown()]


# What callsign keys remove: every default-ignorable, and the blank braille
# pattern, which draws as nothing but is neither.
DRAWS_AS_NOTHING: Ranges = DEFAULT_IGNORABLE + ((0x2800, 0x2800),)
# Unicode's White_Space, which keys trim and collapse to one U+0020.
WHITE_SPACE: Ranges = (
    (0x0009, 0x000D), (0x0020, 0x0020), (0x0085, 0x0085), (0x00A0, 0x00A0), (0x1680, 0x1680),
    (0x2000, 0x200A), (0x2028, 0x2029), (0x202F, 0x202F), (0x205F, 0x205F), (0x3000, 0x3000),
)
_WHITE_SPACE = _characters(WHITE_SPACE)


def _remove_what_draws_as_nothing(value: str) -> str:
    global _REMOVE_IGNORABLE
    if _REMOVE_IGNORABLE is None:
        _REMOVE_IGNORABLE = dict.fromkeys(cp for lo, hi in DRAWS_AS_NOTHING for cp in range(lo, hi + 1))
    return value.translate(_REMOVE_IGNORABLE)


def _collapse(value: str) -> str:
    return " ".join(w for w in "".join(" " if ch in _WHITE_SPACE else ch for ch in value).split(" ") if w)


def shown_callsign(callsign: str) -> str:
    """What LiveKit shows of a callsign (livekit_tokens.display_name): DRAWS_AS_NOTHING removed, White_Space
    trimmed and collapsed, nothing normalised. Its key is the callsign's: two members shown alike hold
    the same callsign, which the database refuses."""
    return _collapse(_remove_what_draws_as_nothing(callsign))


def callsign_clean(callsign: str) -> str:
    """What a callsign shows, compared: DRAWS_AS_NOTHING removed, NFKC, White_Space trimmed and collapsed.

    The database's `public.callsign_clean(text)` computes the same.
    """
    return _collapse(unicodedata.normalize("NFKC", _remove_what_draws_as_nothing(callsign)))


def callsign_key(callsign: str) -> str:
    """What two callsigns must differ in: `callsign_clean`, simple case folding, NFKC.

    The database's `public.callsign_key(text)` computes the same, and a
    unique index on it keeps callsigns distinct. No character's NFKC or
    folding yields what the cleaning removes, so the key of a key is itself.
    """
    from shared import casefold  # the table is only needed where callsigns are compared

    return unicodedata.normalize("NFKC", callsign_clean(callsign).translate(casefold.table()))


def callsign_skeleton_key(callsign: str) -> str:
    """What two callsigns must differ in to not pass for each other: the key of the cleaned text's skeleton.

    The database's `public.callsign_skeleton_key(text)`; a second unique index.
    """
    from shared import confusables

    return callsign_key(confusables.skeleton(callsign_clean(callsign)))


def callsigns_clash(a: str, b: str) -> bool:
    """The same callsign (equal keys), or one that passes for the other (equal skeleton keys)."""
    return callsign_key(a) == callsign_key(b) or callsign_skeleton_key(a) == callsign_skeleton_key(b)


def callsign_mixes_scripts(callsign: str) -> bool:
    """A new callsign mixing scripts in a confusable way (`Воss`): refused, like a clash."""
    from shared import confusables

    return confusables.mixes_scripts_confusably(callsign_clean(callsign))
