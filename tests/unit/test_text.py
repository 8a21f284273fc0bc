"""shared/text.py in Python: the shared cases, the frozen tables, and the
migration carrying the very same definitions as the database's half."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from shared import casefold, text
from tests.text_cases import SAME_CALLSIGN, SHOWN

MIGRATION = Path(__file__).resolve().parents[2] / "supabase/migrations/20251216000100_guests_text_rules_functions.sql"


@pytest.mark.parametrize("value,shown", SHOWN, ids=[repr(v) for v, _ in SHOWN])
def test_shared_cases_in_python(value, shown):
    assert (text.problem(value) is None) is shown
    # The one-regex form (OpenAPI patterns, the database) says the same.
    assert (re.fullmatch(text.pattern("python"), value) is not None) is shown


@pytest.mark.parametrize("a,b,same", SAME_CALLSIGN, ids=[f"{a!r}-{b!r}" for a, b, _ in SAME_CALLSIGN])
def test_shared_callsign_cases_in_python(a, b, same):
    assert (text.callsign_key(a) == text.callsign_key(b)) is same


def test_refusal_names_the_character():
    assert "U+202E" in text.problem("Ace\u202e")
    assert text.problem("\u3000") == "must contain more than whitespace and invisible characters"
    assert text.problem("\u034f\ufe0f") == "must contain more than whitespace and invisible characters"


# The frozen ranges cover everything this Python's unicodedata calls a
# control, format or separator character, and all its whitespace.
def test_frozen_ranges_cover_this_pythons_unicode():
    def within(cp: int, ranges: text.Ranges) -> bool:
        return any(lo <= cp <= hi for lo, hi in ranges)

    for cp in range(0x110000):
        category = unicodedata.category(chr(cp))
        if category in ("Cc", "Cf", "Zl", "Zp"):
            assert within(cp, text.FORBIDDEN), f"U+{cp:04X} ({category}) is not forbidden"
        if chr(cp).isspace() and not within(cp, text.FORBIDDEN):
            assert within(cp, text.BLANK), f"whitespace U+{cp:04X} is not blank"


def _simple_fold(c: str) -> str:
    folded = c.casefold()
    if len(folded) != 1:
        folded = c.lower() if len(c.lower()) == 1 else c
    return folded


_DERIVE = """
import json, sys, unicodedata
def fold(c):
    f = c.casefold()
    if len(f) != 1:
        f = c.lower() if len(c.lower()) == 1 else c
    return f
print(json.dumps([unicodedata.unidata_version,
                  {cp: ord(fold(chr(cp))) for cp in range(0x110000) if not 0xD800 <= cp <= 0xDFFF and fold(chr(cp)) != chr(cp)}]))
"""


def _unicode_14_python() -> str | None:
    """An interpreter whose unicodedata is Unicode 14.0.0 (CPython 3.11), e.g. the machine's python3.11."""
    import glob
    import os
    import shutil
    import subprocess

    pyenv = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    for candidate in [shutil.which("python3.11"), *sorted(glob.glob(f"{pyenv}/versions/3.11.*/bin/python3.11"))]:
        if candidate and subprocess.run([candidate, "-c", "import unicodedata, sys; "
                                         "sys.exit(unicodedata.unidata_version != '14.0.0')"]).returncode == 0:
            return candidate
    return None


def test_fold_table_is_simple_case_folding():
    table = casefold.table()
    if unicodedata.unidata_version == "14.0.0":
        derived = {cp: ord(_simple_fold(chr(cp))) for cp in range(0x110000)
                   if not 0xD800 <= cp <= 0xDFFF and _simple_fold(chr(cp)) != chr(cp)}
    else:  # the suite runs on the deployed Python (3.12: Unicode 15.0); derive with one that has 14.0
        import json
        import subprocess

        python = _unicode_14_python()
        if python is None:
            pytest.skip(f"the table was derived from Unicode 14.0.0; this Python has {unicodedata.unidata_version} "
                        "and no python3.11 was found")
        version, raw = json.loads(subprocess.run([python, "-c", _DERIVE], capture_output=True, text=True,
                                                 check=True).stdout)
        assert version == "14.0.0"
        derived = {int(cp): folded for cp, folded in raw.items()}
    assert table == derived


# The migration is generated from these definitions; a change to one side
# without the other fails here (and the database test compares behaviour).
def test_migration_carries_the_same_definitions():
    sql = MIGRATION.read_text()
    assert f"p_text ~ '{text.pattern('postgres')}'" in sql
    assert casefold.FOLD_RUNS.strip() in sql
    assert f"regexp_replace(p_callsign, '{text.char_class(text.DEFAULT_IGNORABLE, dialect='postgres')}', '', 'g')" in sql


# Default_Ignorable_Code_Point characters that are not format characters:
# allowed, invisible, and gone from the callsign key.
def test_ignorables_are_not_format_characters_and_draw_as_nothing():
    def within(cp: int, ranges: text.Ranges) -> bool:
        return any(lo <= cp <= hi for lo, hi in ranges)

    for lo, hi in text.IGNORABLE:
        for cp in (lo, hi):
            assert not within(cp, text.FORBIDDEN)
            assert text.problem("Ace" + chr(cp)) is None and text.problem(chr(cp)) is not None
            assert text.callsign_key("Ace" + chr(cp)) == text.callsign_key("ACE") == "ace"


# Format characters that are default-ignorable are refused in new text, but an
# old callsign may carry them: the key drops them, so it cannot copy another's.
def test_callsign_key_drops_default_ignorable_format_characters():
    for lo, hi in text.IGNORABLE_FORMAT:
        for cp in (lo, hi):
            assert text.problem("Ace" + chr(cp)) is not None
            assert text.callsign_key("A" + chr(cp) + "ce") == "ace"
    assert text.callsign_key("Ace\u0600") != "ace"  # a format character that shows stays


def test_callsign_key_is_its_own_key():
    # No character's NFKC or folding yields a default-ignorable, so removing
    # them first leaves nothing for a second pass to remove.
    every = "".join(chr(cp) for cp in range(0x20, 0x110000) if not 0xD800 <= cp <= 0xDFFF)
    keys = [text.callsign_key(every[i:i + 1]) for i in range(len(every))]
    assert [k for k in keys if text.callsign_key(k) != k] == []


def test_ecma_pattern_escapes_beyond_the_bmp_with_braces():
    assert "\\u{e0001}" in text.pattern("ecma") and "\\U" not in text.pattern("ecma")


@given(st.text(alphabet=st.sampled_from("aA \u00a0\u3000\u202e\u200b\n\u2028\u3164\u034f\ufe0f\U000e0100ßẞΣσς\ufb01É\u0301"), max_size=12))
def test_pattern_and_problem_agree(value):
    assert (re.fullmatch(text.pattern("python"), value) is not None) is (text.problem(value) is None)
