"""`nexus db migrate | verify | smoke | lint` against real databases.

Each test gets its own database in the session's cluster; `verify` replays
the migrations into its own scratch cluster, as it does for an operator.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import psycopg
import pytest

from nexus.dbtools import lint, main
from nexus.migrate import MIGRATIONS_DIR, apply_shim, prepare_local

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "lint_broken.sql"


@pytest.fixture
def fresh(pg):
    """An empty database (no shim, no migrations), dropped afterwards."""
    name = f"dbtools_{uuid.uuid4().hex[:10]}"
    url = pg.create_database(name)
    yield url
    pg.drop_database(name)


@pytest.fixture
def migrated(fresh):
    prepare_local(fresh, log=lambda *_: None)
    return fresh


def run(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out + out.err


# -- migrate ---------------------------------------------------------------------

def test_migrate_is_idempotent(fresh, capsys):
    code, out = run(capsys, "migrate", "--with-shim", "--url", fresh)
    assert code == 0, out
    shipped = len(list(MIGRATIONS_DIR.glob("*.sql")))
    assert f"{shipped} migration(s) applied" in out
    code, out = run(capsys, "migrate", "--url", fresh)
    assert code == 0 and "0 migration(s) applied" in out
    with psycopg.connect(fresh) as conn:
        assert conn.execute("SELECT count(*) FROM supabase_migrations.schema_migrations").fetchone()[0] == shipped


def test_migrate_uses_database_url(fresh, capsys, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", fresh)
    assert run(capsys, "migrate", "--with-shim")[0] == 0


def test_migrate_without_platform_roles_explains_with_shim(fresh, capsys):
    code, out = run(capsys, "migrate", "--url", fresh)
    assert code == 2 and "--with-shim" in out


def test_no_database_url_is_a_usage_error(capsys, monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    for sub in ("migrate", "verify", "smoke", "lint"):
        code, out = run(capsys, sub)
        assert code == 2 and "DATABASE_URL" in out


def test_unreachable_database_is_reported_without_password(capsys):
    code, out = run(capsys, "lint", "--url", "postgresql://postgres:hunter2-secret@127.0.0.1:9/postgres")
    assert code == 2 and "cannot reach the database" in out and "hunter2-secret" not in out


# Given a database migrated from a folder, when an applied file is edited and
# a new one added, then migrate refuses, names the file, and applies nothing.
def test_migrate_refuses_an_edited_applied_file(fresh, capsys, tmp_path):
    folder = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, folder)
    assert run(capsys, "migrate", "--with-shim", "--url", fresh, "--dir", str(folder))[0] == 0
    edited = sorted(folder.glob("*.sql"))[1]
    edited.write_text(edited.read_text() + "\n-- a later edit\n")
    (folder / "20991231000000_later_table.sql").write_text("CREATE TABLE public.later_table (id int PRIMARY KEY);")

    code, out = run(capsys, "migrate", "--url", fresh, "--dir", str(folder))
    assert code == 1
    assert edited.name in out and "changed after being applied" in out
    with psycopg.connect(fresh) as conn:
        assert conn.execute("SELECT to_regclass('public.later_table')").fetchone()[0] is None


# Given versions applied by `supabase db push` (history without our checksums),
# migrate adopts them, applies nothing twice, and guards them from then on.
def test_migrate_adopts_versions_applied_by_the_supabase_cli(migrated, capsys):
    with psycopg.connect(migrated, autocommit=True) as conn:
        conn.execute("DROP TABLE supabase_migrations.nexus_checksums")
    assert run(capsys, "verify", "--url", migrated)[0] == 0
    code, out = run(capsys, "migrate", "--url", migrated)
    assert code == 0 and "0 migration(s) applied" in out
    with psycopg.connect(migrated) as conn:
        shipped = len(list(MIGRATIONS_DIR.glob("*.sql")))
        assert conn.execute("SELECT count(*) FROM supabase_migrations.nexus_checksums").fetchone()[0] == shipped


def test_failed_migration_is_rolled_back_and_named(fresh, capsys, tmp_path):
    folder = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, folder)
    (folder / "20991231000000_broken.sql").write_text(
        "CREATE TABLE public.half_done (id int PRIMARY KEY);\nSELECT no_such_function();")
    code, out = run(capsys, "migrate", "--with-shim", "--url", fresh, "--dir", str(folder))
    assert code == 1 and "20991231000000_broken.sql" in out and "rolled back" in out
    with psycopg.connect(fresh) as conn:
        assert conn.execute("SELECT to_regclass('public.half_done')").fetchone()[0] is None
        assert conn.execute("SELECT count(*) FROM supabase_migrations.schema_migrations "
                            "WHERE version = '20991231000000'").fetchone()[0] == 0


# -- verify ----------------------------------------------------------------------

def test_verify_passes_after_a_fresh_migrate(fresh, capsys):
    assert run(capsys, "migrate", "--with-shim", "--url", fresh)[0] == 0
    code, out = run(capsys, "verify", "--url", fresh)
    assert code == 0, out
    assert "matches the migrations" in out


# Given a live database with a dropped index, RLS switched off, a loosened
# policy and an extra column, verify names each one and exits non-zero.
def test_verify_names_each_drift(migrated, capsys):
    with psycopg.connect(migrated, autocommit=True) as conn:
        conn.execute("DROP INDEX public.profiles_roles_idx")
        conn.execute("ALTER TABLE public.voice_nets DISABLE ROW LEVEL SECURITY")
        conn.execute("ALTER POLICY profiles_select_own ON public.profiles USING (true)")
        conn.execute("ALTER TABLE public.profiles ADD COLUMN nickname text")
    code, out = run(capsys, "verify", "--url", migrated)
    assert code == 1
    assert "missing  index public.profiles_roles_idx" in out
    assert "changed  table public.voice_nets: rls_enabled differs (migrations: yes; live: no)" in out
    assert "changed  policy public.profiles.profiles_select_own: using differs" in out
    assert "extra    column public.profiles.nickname" in out
    assert "4 difference(s)" in out, out


def test_verify_sees_grants_functions_triggers_and_history(migrated, capsys):
    with psycopg.connect(migrated, autocommit=True) as conn:
        conn.execute("GRANT EXECUTE ON FUNCTION public.livekit_token_context(uuid, text) TO anon")
        conn.execute("ALTER FUNCTION public.rank_level(text) RESET search_path")
        conn.execute("ALTER TABLE auth.users DISABLE TRIGGER on_auth_user_created")
        conn.execute("GRANT USAGE ON SCHEMA nexus_private TO anon")
        conn.execute("ALTER PUBLICATION supabase_realtime DROP TABLE public.voice_presence")
        conn.execute("DELETE FROM supabase_migrations.schema_migrations WHERE version = "
                     "(SELECT max(version) FROM supabase_migrations.schema_migrations)")
    code, out = run(capsys, "verify", "--url", migrated)
    assert code == 1
    latest = sorted(MIGRATIONS_DIR.glob("*.sql"))[-1].name
    for expected in ("function public.livekit_token_context(p_user_id uuid, p_room text): executable_by differs",
                     "function public.rank_level(p_rank text): config differs",
                     "trigger auth.users.on_auth_user_created: enabled differs",
                     "schema nexus_private: usage differs",
                     "missing  realtime publication public.voice_presence",
                     f"missing  migration {latest}"):
        assert expected in out, out


def test_verify_against_a_reference_database(migrated, pg, capsys):
    # The same comparison without a replay: two databases built the same way agree.
    name = f"dbtools_ref_{uuid.uuid4().hex[:8]}"
    reference = pg.create_database(name)
    try:
        prepare_local(reference, log=lambda *_: None)
        assert run(capsys, "verify", "--url", migrated, "--reference", reference)[0] == 0
    finally:
        pg.drop_database(name)


# -- smoke -----------------------------------------------------------------------

def test_smoke_passes_and_changes_nothing(database_url, capsys, sql):
    sql.member("founder")  # rows exist, so "anon sees 0 rows" means something
    counts = {t: sql.one(f"SELECT count(*) FROM {t}") for t in ("public.profiles", "auth.users", "public.voice_nets")}
    code, out = run(capsys, "smoke", "--url", database_url, "--call-volatile")
    assert code == 0, out
    assert "0 failed" in out
    assert "public.profiles: anon blocked" in out and "public.profiles: service_role round trip" in out
    assert "public.livekit_token_context(p_user_id uuid, p_room text): called by service_role" in out
    assert {t: sql.one(f"SELECT count(*) FROM {t}") for t in counts} == counts


def test_smoke_catches_a_table_open_to_anon(migrated, capsys):
    with psycopg.connect(migrated, autocommit=True) as conn:
        conn.execute("INSERT INTO public.voice_nets (code, label) VALUES ('open-net', 'Open')")
        conn.execute("ALTER TABLE public.voice_nets DISABLE ROW LEVEL SECURITY")
        conn.execute("GRANT SELECT ON public.voice_nets TO anon")
    code, out = run(capsys, "smoke", "--url", migrated)
    assert code == 1
    assert "FAIL  public.voice_nets: anon EXPOSED: anon reads 1 of 1 rows" in out


def test_smoke_catches_a_function_service_role_cannot_run(migrated, capsys):
    with psycopg.connect(migrated, autocommit=True) as conn:
        conn.execute("REVOKE EXECUTE ON FUNCTION public.livekit_token_context(uuid, text) FROM service_role")
    code, out = run(capsys, "smoke", "--url", migrated)
    assert code == 1
    assert "FAIL  public.livekit_token_context(p_user_id uuid, p_room text): service_role may not execute it" in out


# -- lint ------------------------------------------------------------------------

# Our migrations must be clean: this is what makes `make test` fail on any finding.
def test_lint_finds_nothing_in_our_migrations(database_url):
    with psycopg.connect(database_url, autocommit=True) as conn:
        findings = lint.run(conn)
    assert findings == [], "lint findings in our migrations:\n" + "\n".join(map(str, findings))


@pytest.fixture
def broken(fresh):
    apply_shim(fresh)
    with psycopg.connect(fresh, autocommit=True) as conn:
        conn.execute(FIXTURE.read_text())
    return fresh


EXPECTED_IN_FIXTURE = [
    ("0013_rls_disabled_in_public", "public.lint_rls_off"),
    ("0007_policy_exists_rls_disabled", "public.lint_policy_rls_off"),
    ("0008_rls_enabled_no_policy", "public.lint_rls_no_policy"),
    ("0004_no_primary_key", "public.lint_no_pk"),
    ("0001_unindexed_foreign_keys", "public.lint_child"),
    ("0009_duplicate_index", "public.lint_dup_index"),
    ("0011_function_search_path_mutable", "public.lint_mutable_search_path()"),
    ("0028_anon_security_definer_function_executable", "public.lint_exposed_definer()"),
    ("0029_authenticated_security_definer_function_executable", "public.lint_exposed_definer()"),
    ("0024_rls_policy_always_true", "public.lint_open_writes"),
    ("0003_auth_rls_initplan", "public.lint_initplan"),
    ("0015_rls_references_user_metadata", "public.lint_user_metadata"),
    ("0010_security_definer_view", "public.lint_definer_view"),
    ("0016_materialized_view_in_api", "public.lint_matview"),
    ("0014_extension_in_public", "hstore"),
    ("role_without_policy", "public.lint_role_gap"),
]


def test_lint_finds_each_class_in_the_broken_fixture(broken, capsys):
    with psycopg.connect(broken, autocommit=True) as conn:
        findings = lint.run(conn)
    found = {(f.lint, f.object) for f in findings}
    assert [e for e in EXPECTED_IN_FIXTURE if e not in found] == []
    # every lint we have is exercised by the fixture
    assert {lint_name for lint_name, _ in EXPECTED_IN_FIXTURE} == set(lint.LINTS)
    # and nothing is flagged that the fixture did not break on purpose
    flagged = {f.object for f in findings}
    assert "public.lint_parent" not in flagged
    assert not any(f.lint == "0024_rls_policy_always_true" and "lint_open_service" in f.detail for f in findings)
    # both always-true write policies, and the unwrapped call despite a wrapped one
    assert sum(f.lint == "0024_rls_policy_always_true" for f in findings) == 2

    code, out = run(capsys, "lint", "--url", broken)
    assert code == 1 and "0001_unindexed_foreign_keys  public.lint_child" in out


def test_lint_on_a_replay_of_our_migrations(capsys):
    code, out = run(capsys, "lint", "--replay")
    assert code == 0, out
    assert "0 finding(s)" in out
