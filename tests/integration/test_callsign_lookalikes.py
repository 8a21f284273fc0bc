"""Callsigns that pass for another (issue 24): the shared cases of
tests/text_cases.py through the database's functions, through PostgREST
(`SET ROLE authenticated` with claims, updating one's own callsign, as its
PATCH does), through sign-up metadata (an auth.users insert, as GoTrue and
the shim do), through `nexus admin callsign`; what LiveKit shows; and
callsigns from before the rule, which stay."""

from __future__ import annotations

import json
import shutil
import uuid

import psycopg
import pytest

from nexus import migrate
from shared import text
from shared.livekit_tokens import display_name
from tests.text_cases import CALLSIGN_CLASHES, MIXED_SCRIPTS

RULE = "20251224000000"
CLASH_IDS = [f"{a!r}-{b!r}" for a, b, _ in CALLSIGN_CLASHES]


@pytest.fixture(scope="module")
def db(pg):
    """A database of its own: the cases use fixed callsigns (`Bill`, `Boss`)."""
    name = f"lookalikes_{uuid.uuid4().hex[:8]}"
    url = pg.create_database(name)
    migrate.prepare_local(url, log=lambda *_: None)
    yield url
    pg.drop_database(name)


@pytest.fixture
def conn(db):
    with psycopg.connect(db, autocommit=True) as c:
        yield c
        # Each case starts from nobody.
        c.execute("DELETE FROM auth.users")


def signed_up(conn, callsign: str | None, created: str | None = None) -> str:
    uid = str(uuid.uuid4())
    conn.execute("INSERT INTO auth.users (id, email, raw_user_meta_data) VALUES (%s, %s, %s::jsonb)",
                 (uid, f"{uid}@example.test", json.dumps({"callsign": callsign} if callsign else {})))
    if created:
        conn.execute("UPDATE public.profiles SET created_at = %s WHERE id = %s", (created, uid))
    return uid


def callsign_of(conn, uid: str) -> str | None:
    return conn.execute("SELECT callsign FROM public.profiles WHERE id = %s", (uid,)).fetchone()[0]


def set_own_callsign(url: str, uid: str, callsign: str) -> None:
    """PostgREST's PATCH /profiles?id=eq.<me> {callsign}: the authenticated role, the caller's claims."""
    with psycopg.connect(url) as c:
        c.execute("SET ROLE authenticated")
        c.execute("SELECT set_config('request.jwt.claims', %s, true)",
                  (json.dumps({"sub": uid, "role": "authenticated"}),))
        c.execute("UPDATE public.profiles SET callsign = %s WHERE id = %s", (callsign, uid))
        c.commit()


def expect_refusal(verdict: str | None):
    """The error PostgREST maps: unique_violation (409) for the same callsign, check_violation (400) naming the rule."""
    if verdict is None:
        return None
    kind, rule = {"same": (psycopg.errors.UniqueViolation, "profiles_callsign_key"),
                  "lookalike": (psycopg.errors.CheckViolation, "profiles_callsign_lookalike"),
                  "mixed": (psycopg.errors.CheckViolation, "profiles_callsign_mixed_scripts"),
                  "reserved": (psycopg.errors.CheckViolation, "profiles_callsign_reserved")}[verdict]
    return kind, rule


# --- the same answers as Python ------------------------------------------------

def test_shared_clash_cases_in_the_database(conn):
    rows = conn.execute(
        "SELECT public.callsign_key(a) = public.callsign_key(b), "
        "       public.callsign_skeleton_key(a) = public.callsign_skeleton_key(b) "
        "FROM unnest(%s::text[], %s::text[]) WITH ORDINALITY AS t (a, b, n) ORDER BY n",
        ([a for a, _, _ in CALLSIGN_CLASHES], [b for _, b, _ in CALLSIGN_CLASHES])).fetchall()
    assert rows == [(text.callsign_key(a) == text.callsign_key(b),
                     text.callsign_skeleton_key(a) == text.callsign_skeleton_key(b)) for a, b, _ in CALLSIGN_CLASHES]
    assert [("same" if same else "lookalike" if alike else None) for same, alike in rows] == \
        [verdict for _, _, verdict in CALLSIGN_CLASHES]


def test_shared_mixed_script_cases_in_the_database(conn):
    rows = conn.execute("SELECT nexus_private.callsign_mixes_scripts(v) FROM unnest(%s::text[]) WITH ORDINALITY AS t (v, n) "
                        "ORDER BY n", ([v for v, _ in MIXED_SCRIPTS],)).fetchall()
    assert [r[0] for r in rows] == [mixes for _, mixes in MIXED_SCRIPTS]


def test_keys_agree_with_python_code_point_by_code_point(conn):
    import random
    import unicodedata

    from shared.confusables import prototypes

    cps = set(prototypes()) | {ord(c) for p in prototypes().values() for c in p}
    cps |= {cp + d for lo, hi in text.DRAWS_AS_NOTHING + text.WHITE_SPACE for cp in (lo, hi) for d in (-1, 0, 1)}
    cps |= set(random.Random(24).sample(range(0x20, 0x110000), 3000))
    # Normalisation of what either Unicode version leaves unassigned may differ.
    cps = sorted(cp for cp in cps if 0x20 <= cp < 0x110000 and not 0xD800 <= cp <= 0xDFFF
                 and unicodedata.category(chr(cp)) not in ("Cn", "Co", "Cs"))
    values = [f"B{chr(cp)}o  {chr(cp)}" for cp in cps]
    rows = conn.execute("SELECT v, public.callsign_key(v), public.callsign_skeleton_key(v), "
                        "nexus_private.callsign_mixes_scripts(v) FROM unnest(%s::text[]) v", (values,)).fetchall()
    differ = [f"U+{ord(v[1]):04X}" for v, key, skel, mixes in rows
              if (key, skel, mixes) != (text.callsign_key(v), text.callsign_skeleton_key(v),
                                        text.callsign_mixes_scripts(v))]
    assert differ == []


# --- through PostgREST -----------------------------------------------------------

@pytest.mark.parametrize("held,wanted,verdict", CALLSIGN_CLASHES, ids=CLASH_IDS)
def test_a_member_cannot_take_a_callsign_that_passes_for_anothers(db, conn, held, wanted, verdict):
    holder = signed_up(conn, held)
    member = signed_up(conn, "Someone Else")
    assert callsign_of(conn, holder) == held
    refusal = expect_refusal(verdict)
    if refusal is None:
        set_own_callsign(db, member, wanted)
        assert callsign_of(conn, member) == wanted
        return
    with pytest.raises(refusal[0]) as caught:
        set_own_callsign(db, member, wanted)
    assert caught.value.diag.constraint_name == refusal[1]
    assert callsign_of(conn, member) == "Someone Else" and callsign_of(conn, holder) == held


@pytest.mark.parametrize("value,mixes", MIXED_SCRIPTS, ids=[repr(v) for v, _ in MIXED_SCRIPTS])
def test_a_new_callsign_mixing_scripts_confusably_is_refused(db, conn, value, mixes):
    member = signed_up(conn, "Someone Else")
    if not mixes:
        set_own_callsign(db, member, value)
        assert callsign_of(conn, member) == value
        return
    with pytest.raises(psycopg.errors.CheckViolation) as caught:
        set_own_callsign(db, member, value)
    assert caught.value.diag.constraint_name == "profiles_callsign_mixed_scripts"
    assert callsign_of(conn, member) == "Someone Else"


@pytest.mark.parametrize("value", ["Scout 1a2b3c4d", "FOUNDER 0123abcd", "member\u00a0deadbeef"])
def test_a_callsign_cannot_be_what_livekit_shows_a_member_without_one(db, conn, value):
    member = signed_up(conn, "Someone Else")
    with pytest.raises(psycopg.errors.CheckViolation) as caught:
        set_own_callsign(db, member, value)
    assert caught.value.diag.constraint_name == "profiles_callsign_reserved"
    set_own_callsign(db, member, "Scout 1a2b3c4")  # not the shape: fine


# --- through sign-up metadata -----------------------------------------------------

@pytest.mark.parametrize("held,wanted,verdict", CALLSIGN_CLASHES, ids=CLASH_IDS)
def test_sign_up_leaves_out_a_callsign_that_passes_for_anothers(conn, held, wanted, verdict):
    signed_up(conn, held)
    newcomer = signed_up(conn, wanted)
    assert callsign_of(conn, newcomer) == (wanted if verdict is None else None)


@pytest.mark.parametrize("value,mixes", MIXED_SCRIPTS, ids=[repr(v) for v, _ in MIXED_SCRIPTS])
def test_sign_up_leaves_out_a_callsign_mixing_scripts_confusably(conn, value, mixes):
    newcomer = signed_up(conn, value)
    assert callsign_of(conn, newcomer) == (None if mixes else value)


# --- through nexus admin -----------------------------------------------------------

@pytest.mark.parametrize("held,wanted,verdict", CALLSIGN_CLASHES, ids=CLASH_IDS)
def test_an_operator_cannot_give_a_callsign_that_passes_for_anothers(db, conn, monkeypatch, capsys,
                                                                      held, wanted, verdict):
    from nexus import admin

    monkeypatch.setenv("DATABASE_URL", db)
    holder = signed_up(conn, held)
    member = signed_up(conn, "Someone Else")
    code = admin.main(["callsign", member, wanted, "--reason", "issue 24", "--as", "ops"])
    answer = json.loads(capsys.readouterr().out)
    if verdict is None:
        assert code == 0 and answer["callsign"] == wanted and callsign_of(conn, member) == wanted
        audit = conn.execute("SELECT action, actor_label, before, after FROM public.admin_audit WHERE id = %s",
                             (answer["auditId"],)).fetchone()
        assert audit == ("member.callsign", "ops", {"callsign": "Someone Else"}, {"callsign": wanted})
        return
    assert code == 1
    assert answer == {"error": "CALLSIGN_TAKEN" if verdict == "same" else "CALLSIGN_REFUSED",
                      "rule": expect_refusal(verdict)[1]}
    assert callsign_of(conn, member) == "Someone Else" and callsign_of(conn, holder) == held


@pytest.mark.parametrize("value,mixes", [c for c in MIXED_SCRIPTS if c[1]], ids=repr)
def test_an_operator_cannot_give_a_callsign_mixing_scripts_confusably(db, conn, monkeypatch, capsys, value, mixes):
    from nexus import admin

    monkeypatch.setenv("DATABASE_URL", db)
    member = signed_up(conn, "Someone Else")
    assert admin.main(["callsign", member, value, "--reason", "issue 24"]) == 1
    assert json.loads(capsys.readouterr().out) == {"error": "CALLSIGN_REFUSED", "rule": "profiles_callsign_mixed_scripts"}


# --- callsigns from before the rule ------------------------------------------------

@pytest.fixture
def before_the_rule(pg, tmp_path):
    """A database migrated up to just before this rule."""
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    for m in migrate.discover():
        if m.version < RULE:
            shutil.copy(m.path, earlier / m.path.name)
    name = f"before_lookalikes_{uuid.uuid4().hex[:8]}"
    url = pg.create_database(name)
    migrate.apply_shim(url)
    migrate.migrate(url, earlier, log=lambda *_: None)
    yield url
    pg.drop_database(name)


def test_callsigns_that_clash_under_the_new_keys_stay_grandfathered(before_the_rule):
    url = before_the_rule
    with psycopg.connect(url, autocommit=True) as c:
        # All distinct under the old key, so all held before the rule (set as a member's
        # PATCH did: sign-up trims its metadata).
        held = {name: signed_up(c, None, created=f"2025-0{i + 1}-01")
                for i, name in enumerate(["Boss", "Boss ", "Boss\u2800", "Воss", "Bill", "BiII", "Bo ss", "Bo  ss"])}
        for name, uid in held.items():
            set_own_callsign(url, uid, name)
        assert all(callsign_of(c, uid) == name for name, uid in held.items())

        migrate.migrate(url, log=lambda *_: None)

        flags = dict(c.execute("SELECT callsign, callsign_grandfathered FROM public.profiles "
                               "WHERE id = ANY(%s::uuid[])", (list(held.values()),)).fetchall())
        assert flags == {"Boss": False, "Boss ": True, "Boss\u2800": True, "Воss": True,
                         "Bill": False, "BiII": True, "Bo ss": False, "Bo  ss": True}
        # Nobody is locked out: every holder can still be promoted, and keeps their callsign.
        c.execute("UPDATE public.profiles SET rank = 'voyager' WHERE id = ANY(%s::uuid[])", (list(held.values()),))
        for name, uid in held.items():
            set_own_callsign(url, uid, name)  # PostgREST sends the whole row back: unchanged is fine
            assert callsign_of(c, uid) == name
        # A grandfathered look-alike cannot be taken again by someone new.
        with pytest.raises(psycopg.errors.CheckViolation):
            set_own_callsign(url, signed_up(c, None), "Вoss\u3000")
        # The older holder shows their callsign in LiveKit; the grandfathered do not pass for them.
        shown = {name: display_name(c.execute("SELECT public.livekit_token_context(%s, 'x') -> 'profile'",
                                              (uid,)).fetchone()[0], uid)
                 for name, uid in held.items()}
        assert shown["Boss"] == "Boss" and shown["Bill"] == "Bill" and shown["Bo ss"] == "Bo ss"
        assert shown["Boss "] == f"Voyager {held['Boss '][:8]}"
        assert len(set(shown.values())) == len(shown)
