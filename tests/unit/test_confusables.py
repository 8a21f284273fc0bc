"""Callsigns that pass for another, in Python: the shared cases, the frozen
UTS #39 tables against the migration that carries them, and ICU's spoof
checker as the oracle for every code point both Unicode versions assign."""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path

import pytest

from shared import casefold, confusables, text
from shared.confusables_data import CONFUSABLES, CONFUSABLES_VERSION, SCRIPTS
from tests.text_cases import CALLSIGN_CLASHES, MIXED_SCRIPTS

MIGRATION = Path(__file__).resolve().parents[2] / "supabase/migrations/20251224000000_callsign_lookalikes_functions.sql"


@pytest.mark.parametrize("held,wanted,verdict", CALLSIGN_CLASHES, ids=[f"{a!r}-{b!r}" for a, b, _ in CALLSIGN_CLASHES])
def test_shared_clash_cases_in_python(held, wanted, verdict):
    same = text.callsign_key(held) == text.callsign_key(wanted)
    alike = text.callsign_skeleton_key(held) == text.callsign_skeleton_key(wanted)
    assert (verdict == "same") is same
    assert (verdict is not None) is text.callsigns_clash(held, wanted)
    if verdict == "lookalike":
        assert alike


@pytest.mark.parametrize("value,mixes", MIXED_SCRIPTS, ids=[repr(v) for v, _ in MIXED_SCRIPTS])
def test_shared_mixed_script_cases_in_python(value, mixes):
    assert text.callsign_mixes_scripts(value) is mixes


def test_what_draws_as_nothing_and_white_space_are_gone_from_the_key():
    for lo, hi in text.DRAWS_AS_NOTHING:
        for cp in (lo, hi):
            assert text.callsign_key("Bo" + chr(cp) + "ss") == "boss"
    for lo, hi in text.WHITE_SPACE:
        for cp in (lo, hi):
            assert text.callsign_key(chr(cp) + "Bo" + chr(cp) * 2 + "ss" + chr(cp)) == "bo ss"


# The key of what LiveKit shows (livekit_tokens.display_name: what draws as
# nothing removed, White_Space collapsed) is the callsign's key: two members
# shown alike hold the same callsign, which the unique index forbids.
@pytest.mark.parametrize("held,wanted,verdict", CALLSIGN_CLASHES, ids=[f"{a!r}-{b!r}" for a, b, _ in CALLSIGN_CLASHES])
def test_the_key_is_a_function_of_what_livekit_shows(held, wanted, verdict):
    from shared.text import shown_callsign

    for value in (held, wanted):
        assert text.callsign_key(shown_callsign(value)) == text.callsign_key(value)


def test_keys_are_their_own_keys():
    every = [chr(cp) for cp in range(0x20, 0x110000) if not 0xD800 <= cp <= 0xDFFF]
    assert [c for c in every if text.callsign_key(text.callsign_key(c)) != text.callsign_key(c)] == []
    assert [c for c in every if text.callsign_clean(text.callsign_clean(c)) != text.callsign_clean(c)] == []


def test_the_migration_carries_the_same_tables():
    sql = MIGRATION.read_text()
    assert CONFUSABLES.strip() in sql and SCRIPTS.strip() in sql and casefold.FOLD_RUNS.strip() in sql
    assert f"regexp_replace(p_callsign, '{text.char_class(text.DRAWS_AS_NOTHING, dialect='postgres')}', '', 'g')" in sql
    assert f"'{text.char_class(text.WHITE_SPACE, dialect='postgres')}+', ' ', 'g'" in sql
    assert f"<> {len(CONFUSABLES.split())} THEN" in sql and f"<> {len(SCRIPTS.split())} THEN" in sql


def test_white_space_is_unicodes():
    # Python's isspace() adds \x1c-\x1f (controls, refused anyway).
    assert {chr(cp) for lo, hi in text.WHITE_SPACE for cp in range(lo, hi + 1)} == {
        chr(cp) for cp in range(0x110000) if chr(cp).isspace() and cp not in range(0x1C, 0x20)}


# --- ICU's spoof checker as the oracle ----------------------------------------

try:
    import icu
except ImportError:  # without the dev extras; CI installs them, and there a missing oracle fails
    if os.environ.get("CI") == "true":
        raise
    icu = None
needs_icu = pytest.mark.skipif(icu is None, reason="PyICU (dev extras) is the oracle")


def _both_assign(cp: int) -> bool:
    """Assigned in this Python's Unicode and in ICU's, and not a surrogate or private use."""
    return (unicodedata.category(chr(cp)) not in ("Cn", "Cs", "Co")
            and icu.Char.charType(cp) not in (icu.UCharCategory.UNASSIGNED, icu.UCharCategory.SURROGATE,
                                              icu.UCharCategory.PRIVATE_USE_CHAR))


@needs_icu
def test_the_tables_are_the_version_icu_carries():
    assert CONFUSABLES_VERSION == icu.UNICODE_VERSION or icu.UNICODE_VERSION.startswith(CONFUSABLES_VERSION[:4])


@needs_icu
def test_skeletons_agree_with_icu_on_every_code_point():
    checker = icu.SpoofChecker()
    differ = []
    for cp in range(0x110000):
        if _both_assign(cp):
            ch = chr(cp)
            theirs = checker.getSkeleton(0, ch)
            if confusables.skeleton(ch) != theirs:
                differ.append(f"U+{cp:04X}")
    assert differ == []


@needs_icu
def test_script_sets_agree_with_icu_on_every_code_point():
    common = {icu.UScriptCode.COMMON, icu.UScriptCode.INHERITED}
    augment = {"Hani": {"Hanb", "Jpan", "Kore"}, "Hira": {"Jpan"}, "Kana": {"Jpan"}, "Hang": {"Kore"},
               "Bopo": {"Hanb"}}
    differ = []
    for cp in range(0x110000):
        if not _both_assign(cp):
            continue
        codes = set(icu.Script.getScriptExtensions(cp))
        if codes <= common:
            expected = None
        else:
            names = {icu.Script(code).getShortName() for code in codes}
            expected = set(names)
            for name in names:
                expected |= augment.get(name, set())
        ours = confusables.scripts(chr(cp))
        if (set(ours) if ours is not None else None) != expected:
            differ.append(f"U+{cp:04X}")
    assert differ == []


@needs_icu
@pytest.mark.parametrize("held,wanted,verdict", CALLSIGN_CLASHES, ids=[f"{a!r}-{b!r}" for a, b, _ in CALLSIGN_CLASHES])
def test_icu_finds_the_lookalikes_confusable(held, wanted, verdict):
    checker = icu.SpoofChecker()
    a, b = text.callsign_clean(held), text.callsign_clean(wanted)
    if verdict == "lookalike":
        assert checker.areConfusable(a, b) != 0
