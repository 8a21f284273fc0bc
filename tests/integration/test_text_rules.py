"""The database's half of shared/text.py agrees with Python, on every locale.

The shared cases (tests/text_cases.py) run against `public.text_is_shown_plainly`
and `public.callsign_key` in databases of the embedded server's locale (C)
and of the locales Supabase projects use (C.UTF-8, en_US.UTF-8; a locale the
machine lacks is skipped, and fails the run under CI=true: .ci/run generates
it). Then both sides are compared code point by code point: around every
range boundary here, everywhere in the slow suite.
"""

from __future__ import annotations

import os
import random
import unicodedata

import psycopg
import pytest

from shared import casefold, text
from tests.text_cases import SAME_CALLSIGN, SHOWN

LOCALES = ("embedded", "C.UTF-8", "en_US.UTF-8")


def create_locale_database(pg, locale: str) -> str:
    """A new empty database of `locale` on the session cluster; its name. A locale the machine lacks
    skips the caller, and fails it under CI=true (.ci/run generates en_US.UTF-8)."""
    name = "text_rules_" + locale.replace(".", "_").replace("-", "").lower()
    with psycopg.connect(pg.url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        try:
            admin.execute(f"CREATE DATABASE \"{name}\" TEMPLATE template0 ENCODING 'UTF8' LOCALE '{locale}'")
        except psycopg.Error as e:
            missing = (f"this machine has no {locale} locale ({e.sqlstate}); on Debian: apt-get install "
                       f"locales, then enable it in /etc/locale.gen and run locale-gen (.ci/run does)")
            if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
                pytest.fail(f"{missing}: CI must run the locale cases")
            pytest.skip(missing)
    return name


def test_a_missing_locale_is_a_skip_here_and_a_failure_under_ci(pg, monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI must run the locale cases"):
        create_locale_database(pg, "xx_XX.UTF-8")
    monkeypatch.setenv("CI", "")
    with pytest.raises(pytest.skip.Exception, match="no xx_XX.UTF-8 locale"):
        create_locale_database(pg, "xx_XX.UTF-8")


@pytest.fixture(scope="module", params=LOCALES)
def db(request, pg, database_url):
    """A connection to a migrated database of one locale."""
    from nexus.migrate import prepare_local

    locale = request.param
    if locale == "embedded":
        url = database_url
    else:
        name = create_locale_database(pg, locale)
        url = pg.url_for(name)
        prepare_local(url, log=lambda *_: None)
    with psycopg.connect(url, autocommit=True) as conn:
        yield conn
    if locale != "embedded":
        pg.drop_database(name)


def test_locale_is_what_it_says(db):
    # lower() follows the locale: ASCII only under C. callsign_key must not.
    ctype = db.execute("SELECT datctype FROM pg_database WHERE datname = current_database()").fetchone()[0]
    lowered = db.execute("SELECT lower('ÀCE'), public.callsign_key('ÀCE')").fetchone()
    assert lowered[1] == "àce"
    assert lowered[0] == ("Àce" if ctype == "C" else "àce")


def test_shared_cases_in_the_database(db):
    values = [v for v, _ in SHOWN]
    rows = db.execute("SELECT v, public.text_is_shown_plainly(v) FROM unnest(%s::text[]) v",
                      (values,)).fetchall()
    assert [(v, ok) for v, ok in rows] == SHOWN


def test_shared_callsign_cases_in_the_database(db):
    rows = db.execute("SELECT public.callsign_key(a) = public.callsign_key(b) FROM unnest(%s::text[], %s::text[]) "
                      "AS t (a, b)", ([a for a, _, _ in SAME_CALLSIGN], [b for _, b, _ in SAME_CALLSIGN])).fetchall()
    assert [r[0] for r in rows] == [same for _, _, same in SAME_CALLSIGN]


def _code_points(everything: bool) -> list[int]:
    if everything:
        return [cp for cp in range(1, 0x110000) if not 0xD800 <= cp <= 0xDFFF]
    ranges = text.FORBIDDEN + text.INVISIBLE
    edges = {cp + d for lo, hi in ranges for cp in (lo, hi) for d in (-1, 0, 1)}
    inside = {cp for lo, hi in ranges for cp in range(lo, hi + 1)}
    folded = {cp for pair in casefold.runs() for cp in pair}
    sample = set(random.Random(12).sample(range(1, 0x110000), 3000))
    return sorted(cp for cp in edges | inside | folded | sample if 0 < cp < 0x110000 and not 0xD800 <= cp <= 0xDFFF)


def _assigned(cp: int) -> bool:
    # Normalisation of unassigned code points may differ between Unicode versions.
    return unicodedata.category(chr(cp)) not in ("Cn", "Co", "Cs")


def _compare_every_code_point(db, everything: bool) -> None:
    cps = _code_points(everything)
    refused = {cp for (cp,) in db.execute(
        "SELECT cp FROM unnest(%s::int[]) cp WHERE NOT public.text_is_shown_plainly('a' || chr(cp))", (cps,))}
    assert refused == {cp for cp in cps if text.problem("a" + chr(cp))}
    blank = {cp for (cp,) in db.execute(
        "SELECT cp FROM unnest(%s::int[]) cp WHERE NOT public.text_is_shown_plainly(chr(cp) || ' ')", (cps,))}
    assert blank == {cp for cp in cps if text.problem(chr(cp) + " ")}
    assigned = [cp for cp in cps if _assigned(cp)]
    keys = db.execute("SELECT cp, public.callsign_key(chr(cp)) FROM unnest(%s::int[]) cp", (assigned,)).fetchall()
    differ = [f"U+{cp:04X}" for cp, key in keys if key != text.callsign_key(chr(cp))]
    assert differ == []


def test_database_and_python_agree_around_every_boundary(db):
    _compare_every_code_point(db, everything=False)


@pytest.mark.slow
def test_database_and_python_agree_on_every_code_point(db):
    _compare_every_code_point(db, everything=True)
