"""A member's callsign, which others see in voice and push text: plain text
(shared/text.py's rules) and not one another member holds, compared after
NFKC and case folding."""

from __future__ import annotations

import json

import psycopg
import pytest

from tests.support import unique_callsign as unique
from tests.text_cases import SHOWN


def _as_member(url: str, member_id: str):
    conn = psycopg.connect(url)
    conn.execute("SET ROLE authenticated")
    conn.execute("SELECT set_config('request.jwt.claims', %s, false)",
                 (json.dumps({"sub": member_id, "role": "authenticated"}),))
    return conn


def callsign_of(sql, member) -> str | None:
    return sql.one("SELECT callsign FROM public.profiles WHERE id = %s", (member.id,))


def set_own_callsign(url: str, member, callsign: str) -> None:
    with _as_member(url, member.id) as conn:
        conn.execute("UPDATE public.profiles SET callsign = %s WHERE id = %s", (callsign, member.id))
        conn.commit()


REFUSED = [v for v, shown in SHOWN if not shown]


@pytest.mark.parametrize("bad", REFUSED, ids=[repr(v) for v in REFUSED])
def test_member_cannot_set_a_callsign_others_must_not_be_shown(database_url, sql, bad):
    mine = unique("Ace")
    member = sql.member("scout", callsign=mine)
    with pytest.raises(psycopg.errors.CheckViolation):
        set_own_callsign(database_url, member, bad)
    assert callsign_of(sql, member) == mine


def test_member_can_set_a_plain_callsign(database_url, sql):
    member = sql.member("scout", callsign=unique("Ace"))
    wanted = unique("Ace Ventura-2 ✈")
    set_own_callsign(database_url, member, wanted)
    assert callsign_of(sql, member) == wanted


# Given a member holding a callsign, when another member sets a copy of it
# (other case, fullwidth, decomposed accents), then the database refuses it
# as taken (PostgREST answers 409) and nothing changes.
@pytest.mark.parametrize("copy", [str.upper, str.lower, str.swapcase,
                                  lambda s: s.translate({c: c + 0xFEE0 for c in range(0x21, 0x7F)})])
def test_member_cannot_take_a_callsign_another_holds(database_url, sql, copy):
    held = unique("Ñandú")
    holder = sql.member("scout", callsign=held)
    other = sql.member("scout", callsign=unique("Other"))
    before = callsign_of(sql, other)
    with pytest.raises(psycopg.errors.UniqueViolation):
        set_own_callsign(database_url, other, copy(held))
    assert callsign_of(sql, other) == before and callsign_of(sql, holder) == held


# Characters that draw as nothing (default-ignorables) do not make a new
# callsign: "Ace" with a combining grapheme joiner or a variation selector
# after it looks like "Ace", so it is taken.
IMPERSONATIONS = {"grapheme joiner": lambda s: s + "\u034f", "VS16": lambda s: s + "\ufe0f",
                  "VS17 inside": lambda s: s[:2] + "\U000e0100" + s[2:], "Hangul filler": lambda s: s + "\u3164"}


@pytest.mark.parametrize("copy", IMPERSONATIONS.values(), ids=IMPERSONATIONS.keys())
def test_member_cannot_take_a_callsign_with_invisible_characters_added(database_url, sql, copy):
    held = unique("Ace")
    holder = sql.member("scout", callsign=held)
    other = sql.member("scout", callsign=unique("Other"))
    before = callsign_of(sql, other)
    with pytest.raises(psycopg.errors.UniqueViolation):
        set_own_callsign(database_url, other, copy(held))
    assert callsign_of(sql, other) == before and callsign_of(sql, holder) == held


@pytest.mark.parametrize("invisible", ["\u034f", "\ufe0f", "\U000e0100 \u034f"])
def test_member_cannot_set_an_invisible_callsign(database_url, sql, invisible):
    mine = unique("Ace")
    member = sql.member("scout", callsign=mine)
    with pytest.raises(psycopg.errors.CheckViolation):
        set_own_callsign(database_url, member, invisible)
    assert callsign_of(sql, member) == mine


def test_member_can_recase_their_own_callsign(database_url, sql):
    member = sql.member("scout", callsign=unique("ace"))
    set_own_callsign(database_url, member, callsign_of(sql, member).upper())
    assert callsign_of(sql, member).startswith("ACE ")


# Given a taken or rule-breaking callsign in the sign-up metadata, the sign-up
# still creates the account and its profile, with no callsign.
def test_sign_up_with_a_taken_callsign_gets_none(sql):
    held = unique("Maverick")
    sql.member("scout", callsign=held)
    member = sql.member("vagrant", callsign=held.upper())
    assert sql.one("SELECT count(*) FROM public.profiles WHERE id = %s", (member.id,)) == 1
    assert callsign_of(sql, member) is None


@pytest.mark.parametrize("bad", ["\tAce\nMedic\x07", "Ace\u202eeciv", "\n\t ", "\u3000", "A\u200bce"])
def test_sign_up_with_a_callsign_others_must_not_be_shown_gets_none(sql, bad):
    member = sql.member("vagrant", callsign=bad)
    assert sql.one("SELECT count(*) FROM public.profiles WHERE id = %s", (member.id,)) == 1
    assert callsign_of(sql, member) is None
