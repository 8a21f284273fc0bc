"""The audit is what it says (issue 24): no UPDATE, DELETE or TRUNCATE
succeeds for any role, its owner included, short of DDL on the table; only
the definer functions write it; `nexus db verify` and health's drift check
report a removed guard; its reason and operator label follow the text rules
(the table's checks, the member-admin endpoint, `nexus admin`)."""

from __future__ import annotations

import json
import uuid

import psycopg
import pytest

from nexus.dbtools import main as db_main
from tests import support

ATTEMPTS = {
    "update": "UPDATE public.admin_audit SET reason = 'rewritten'",
    "delete": "DELETE FROM public.admin_audit",
    "truncate": "TRUNCATE public.admin_audit",
    "merge": ("MERGE INTO public.admin_audit a USING (SELECT 1) s ON true "
              "WHEN MATCHED THEN UPDATE SET reason = 'rewritten'"),
}


@pytest.fixture(scope="module")
def db(pg):
    with support.migrated_database(pg, "audit_guards") as url:
        yield url


@pytest.fixture(scope="module")
def trail(db):
    """A founder, a member and an audit row about the member, written the only way there is."""
    sql = support.Db(db)
    founder, member = sql.member("founder"), sql.member("scout")
    result = sql.one("SELECT public.member_admin_change(%s, %s, 'voyager', '[]', '[]', 'promoted', NULL)",
                     (founder.id, member.id))
    assert "auditId" in result, result
    yield sql, founder, member
    sql.close()


def snapshot(sql) -> list[tuple]:
    return sql.execute("SELECT id, actor, actor_id, actor_label, action, member_id, before, after, reason "
                       "FROM public.admin_audit ORDER BY id")


def attempt(url: str, statement: str, *, role: str | None = None, claims: dict | None = None,
            setup: tuple[str, ...] = ()) -> psycopg.Error:
    """Run `statement` as `role`; return the error it must end in (the transaction is rolled back)."""
    with psycopg.connect(url) as conn:
        for s in setup:
            conn.execute(s)
        if role:
            conn.execute(f"SET ROLE {role}")
        if claims:
            conn.execute("SELECT set_config('request.jwt.claims', %s, true)", (json.dumps(claims),))
        try:
            conn.execute(statement)
        except psycopg.Error as e:
            conn.rollback()
            return e
        conn.rollback()
    raise AssertionError(f"{statement!r} as {role or 'postgres'} succeeded")


@pytest.mark.parametrize("what", ATTEMPTS)
@pytest.mark.parametrize("who", ["postgres", "postgres in replica mode", "service_role", "authenticated founder"])
def test_nobody_changes_or_empties_the_audit(db, trail, who, what):
    sql, founder, _ = trail
    before = snapshot(sql)
    assert before
    kwargs = {"postgres": {},
              # what a logical replication apply or a restore sets: ordinary triggers do not fire
              "postgres in replica mode": {"setup": ("SET session_replication_role = replica",)},
              "service_role": {"role": "service_role"},
              "authenticated founder": {"role": "authenticated",
                                        "claims": {"sub": founder.id, "role": "authenticated"}}}[who]
    error = attempt(db, ATTEMPTS[what], **kwargs)
    assert isinstance(error, psycopg.errors.InsufficientPrivilege), error
    assert snapshot(sql) == before


# On Supabase the owner (postgres) is no superuser: there the privileges stop it
# too, before the triggers. The table is handed to a plain role inside a
# transaction that is rolled back.
@pytest.mark.parametrize("what", ATTEMPTS)
def test_a_plain_owner_has_neither_the_privilege_nor_a_way_past_the_triggers(db, trail, what):
    sql, _, _ = trail
    before = snapshot(sql)
    owner = f"audit_owner_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(db) as conn:
        conn.execute(f"CREATE ROLE {owner} NOLOGIN")
        conn.execute(f"ALTER TABLE public.admin_audit OWNER TO {owner}")
        conn.execute(f"GRANT USAGE ON SCHEMA public TO {owner}")
        conn.execute(f"SET ROLE {owner}")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(ATTEMPTS[what])
        conn.rollback()
    assert snapshot(sql) == before


@pytest.mark.parametrize("who", ["service_role", "authenticated founder", "anon"])
def test_only_the_definer_functions_write_the_audit(db, trail, who):
    sql, founder, member = trail
    before = snapshot(sql)
    forged = ("INSERT INTO public.admin_audit (actor, actor_id, action, member_id, after, reason) "
              f"VALUES ('member', '{founder.id}', 'member.change', '{member.id}', '{{}}', 'forged')")
    kwargs = {"service_role": {"role": "service_role"},
              "authenticated founder": {"role": "authenticated", "claims": {"sub": founder.id, "role": "authenticated"}},
              "anon": {"role": "anon"}}[who]
    assert isinstance(attempt(db, forged, **kwargs), psycopg.errors.InsufficientPrivilege)
    assert snapshot(sql) == before


BAD_TEXT = {"terminal escape": "ok\x1b[2J\x1b[31mpwned", "bidi override": "ok \u202eeci",
            "zero-width": "o\u200bk", "newline": "one\ntwo", "blank": "\u3000"}


@pytest.mark.parametrize("bad", BAD_TEXT.values(), ids=BAD_TEXT.keys())
def test_the_audit_holds_no_reason_or_label_others_must_not_be_shown(db, trail, bad):
    sql, _, member = trail
    before = snapshot(sql)
    rank = sql.one("SELECT rank FROM public.profiles WHERE id = %s", (member.id,))
    for call, rule in [
        (("SELECT public.member_admin_change(NULL, %s, 'scout', '[]', '[]', %s, 'ops')", (member.id, bad)),
         "admin_audit_reason_shown_plainly"),
        (("SELECT public.member_admin_change(NULL, %s, 'scout', '[]', '[]', 'demoted', %s)", (member.id, bad)),
         "admin_audit_label_shown_plainly"),
    ]:
        with psycopg.connect(db) as conn:
            with pytest.raises(psycopg.errors.CheckViolation) as caught:
                conn.execute(*call)
            assert caught.value.diag.constraint_name == rule
    assert snapshot(sql) == before
    assert sql.one("SELECT rank FROM public.profiles WHERE id = %s", (member.id,)) == rank


@pytest.mark.parametrize("bad", BAD_TEXT.values(), ids=BAD_TEXT.keys())
@pytest.mark.parametrize("option", ["--reason", "--as"])
def test_nexus_admin_refuses_such_text_as_a_usage_error(db, trail, monkeypatch, capsys, bad, option):
    from nexus import admin

    sql, _, member = trail
    monkeypatch.setenv("DATABASE_URL", db)
    before = snapshot(sql)
    argv = ["member", member.id, "--rank", "scout", "--reason", "demoted", "--as", "ops"]
    argv[argv.index(option) + 1] = bad
    with pytest.raises(SystemExit) as exited:
        admin.main(argv)
    assert exited.value.code == 2
    assert option in capsys.readouterr().err
    assert snapshot(sql) == before


def test_nexus_admin_refuses_a_user_name_the_audit_cannot_hold(db, trail, monkeypatch, capsys):
    from nexus import admin

    sql, _, member = trail
    monkeypatch.setenv("DATABASE_URL", db)
    monkeypatch.setenv("USER", "ops\u202e")
    with pytest.raises(SystemExit) as exited:
        admin.main(["member", member.id, "--rank", "scout", "--reason", "demoted"])
    assert exited.value.code == 2 and "--as" in capsys.readouterr().err


# --- a removed guard is reported ----------------------------------------------------

GUARDS = {
    "dropped truncate trigger": ("DROP TRIGGER admin_audit_no_truncate ON public.admin_audit",
                                 "missing  trigger public.admin_audit.admin_audit_no_truncate"),
    "disabled row trigger": ("ALTER TABLE public.admin_audit DISABLE TRIGGER admin_audit_append_only",
                             "trigger public.admin_audit.admin_audit_append_only: enabled differs"),
    "row trigger no longer ALWAYS": ("ALTER TABLE public.admin_audit ENABLE TRIGGER admin_audit_append_only",
                                     "trigger public.admin_audit.admin_audit_append_only: enabled differs"),
    "insert granted back": ("GRANT INSERT ON public.admin_audit TO service_role",
                            "public.admin_audit"),
}


@pytest.mark.parametrize("change,expected", GUARDS.values(), ids=GUARDS.keys())
def test_nexus_db_verify_reports_a_removed_guard(pg, capsys, change, expected):
    with support.migrated_database(pg, "audit_verify") as url:
        assert db_main(["verify", "--url", url]) == 0
        capsys.readouterr()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(change)
        code = db_main(["verify", "--url", url])
        out = capsys.readouterr()
        assert code == 1
        assert expected in out.out + out.err, out.out + out.err
