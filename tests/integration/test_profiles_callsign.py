"""A member's callsign, which others see in voice and push text, holds no control characters."""

from __future__ import annotations

import json

import psycopg
import pytest


def _as_member(url: str, member_id: str):
    conn = psycopg.connect(url)
    conn.execute("SET ROLE authenticated")
    conn.execute("SELECT set_config('request.jwt.claims', %s, false)",
                 (json.dumps({"sub": member_id, "role": "authenticated"}),))
    return conn


@pytest.mark.parametrize("bad", ["Ace\nMedic needs help", "Ace\x7f", "\t", "   ", "Ace\x1b[31m"])
def test_member_cannot_set_a_callsign_with_control_characters(database_url, sql, bad):
    member = sql.member("scout", callsign="Ace")
    with _as_member(database_url, member.id) as conn:
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute("UPDATE public.profiles SET callsign = %s WHERE id = %s", (bad, member.id))
    assert sql.one("SELECT callsign FROM public.profiles WHERE id = %s", (member.id,)) == "Ace"


def test_member_can_set_a_plain_callsign(database_url, sql):
    member = sql.member("scout", callsign="Ace")
    with _as_member(database_url, member.id) as conn:
        conn.execute("UPDATE public.profiles SET callsign = %s WHERE id = %s", ("Ace Ventura-2 ✈", member.id))
        conn.commit()
    assert sql.one("SELECT callsign FROM public.profiles WHERE id = %s", (member.id,)) == "Ace Ventura-2 ✈"


def test_sign_up_with_control_characters_in_its_callsign_still_creates_the_profile(sql):
    member = sql.member("vagrant", callsign="\tAce\nMedic\x07")
    assert sql.one("SELECT callsign FROM public.profiles WHERE id = %s", (member.id,)) == "Ace Medic"


def test_sign_up_with_a_blank_callsign_gets_none(sql):
    member = sql.member("vagrant", callsign="\n\t ")
    assert sql.one("SELECT callsign FROM public.profiles WHERE id = %s", (member.id,)) is None
