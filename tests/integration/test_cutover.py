"""The cutover as an operator runs it (issue 18): `nexus db adopt --plan`,
`nexus db adopt`, and the real Supabase CLI (pinned in package.json, installed
by `make supabase-cli` into node_modules/) pushing our chain to an empty and,
after the history repair, to a predecessor-shaped database.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import psycopg
import pytest

from nexus.dbtools import catalog, main, scratch
from nexus.dbtools.verify import report
from nexus.migrate import MIGRATIONS_DIR, ROOT, apply_shim, discover, migrate
from tests import predecessor

SUPABASE = ROOT / "node_modules" / ".bin" / "supabase"


@pytest.fixture(scope="session")
def supabase_cli() -> Path:
    if not SUPABASE.exists():
        r = subprocess.run(["make", "-C", str(ROOT), "supabase-cli"], capture_output=True, text=True, timeout=600)
        if r.returncode != 0 or not SUPABASE.exists():
            why = f"the Supabase CLI could not be installed (make supabase-cli): {r.stderr.strip()[-400:]}"
            if os.environ.get("CI") == "true":
                pytest.fail(why)  # CI must prove the cutover with the real CLI, not skip it
            pytest.skip(why)
    return SUPABASE


def cli(binary: Path, *args: str, workdir: Path = ROOT) -> subprocess.CompletedProcess:
    env = dict(os.environ, SUPABASE_TELEMETRY_DISABLED="1", DO_NOT_TRACK="1")
    return subprocess.run([str(binary), *args, "--workdir", str(workdir)], capture_output=True, text=True,
                          timeout=300, env=env)


def _cli_url(url: str) -> str:
    return url + "?sslmode=disable"


@pytest.fixture(scope="module")
def reference(pg):
    name = f"cutover_ref_{uuid.uuid4().hex[:8]}"
    url = pg.create_database(name)
    scratch.replay(url)
    yield url
    pg.drop_database(name)


@pytest.fixture
def db(pg):
    name = f"cutover_{uuid.uuid4().hex[:10]}"
    url = pg.create_database(name)
    yield url
    pg.drop_database(name)


def _versions(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [v for (v,) in conn.execute("SELECT version FROM supabase_migrations.schema_migrations ORDER BY version")]


def _partial(tmp_path: Path, count: int) -> Path:
    """A project folder whose migrations are the first `count` of ours."""
    work = tmp_path / "project"
    (work / "supabase" / "migrations").mkdir(parents=True)
    shutil.copy(ROOT / "supabase" / "config.toml", work / "supabase" / "config.toml")
    for f in sorted(MIGRATIONS_DIR.glob("*.sql"))[:count]:
        shutil.copy(f, work / "supabase" / "migrations" / f.name)
    return work


def _listed(out: str) -> list[tuple[str, str]]:
    rows = []
    for line in out.splitlines():
        cells = [c.strip().strip("`") for c in line.split("|")]
        if len(cells) == 3 and (cells[0][:1].isdigit() or cells[1][:1].isdigit()):
            rows.append((cells[0], cells[1]))
    return rows


def _state(url: str) -> tuple[str, list]:
    with psycopg.connect(url) as conn:
        snap = catalog.dump(catalog.snapshot(conn))
        counts = conn.execute("SELECT (SELECT count(*) FROM public.profiles), (SELECT count(*) FROM public.voice_nets), "
                              "(SELECT count(*) FROM supabase_migrations.schema_migrations), "
                              "to_regnamespace('nexus_adopt') IS NULL").fetchall()
    return snap, counts


# -- nexus db adopt ------------------------------------------------------------------

def test_plan_prints_everything_and_changes_nothing(db, capsys):
    predecessor.build(db)
    before = _state(db)
    code = main(["adopt", "--plan", "--url", db])
    out = capsys.readouterr().out
    assert code == 0, out
    assert _state(db) == before
    assert "history rows to repair (marked reverted, kept in nexus_adopt.reverted_history): 14" in out
    assert "20250106000001  fix_rank_persistence" in out
    assert "20251208000000_adopt_predecessor_set_aside.sql" in out
    assert "voice_net_bridges: self-bridge removed" in out and "voice_presence: open rows closed" in out
    assert "rows closed, cancelled, cleared or left behind" in out
    assert "powers held until an operator confirms them (7)" in out
    assert "rows not adopted (7), kept in nexus_adopt" in out
    assert "1  certifications: held until an operator confirms (nexus_adopt.holds)" in out
    assert "1  profiles: no auth user (nobody can sign in as it)" in out
    assert "1  push_subscriptions: endpoint held by a newer subscription once trimmed" in out
    assert "the predecessor's guests, now vagrants without a callsign (2)" in out
    assert "guest_expires_at 2025-01-04" in out
    assert "table public.squads" in out and "WARN   foreign  public.player_status" in out
    assert "plan: nothing was changed" in out


def test_adopt_refuses_without_a_snapshot_and_changes_nothing(db, capsys):
    predecessor.build(db)
    before = _state(db)
    code = main(["adopt", "--url", db])
    out = capsys.readouterr()
    assert code == 2 and "--snapshot" in out.err
    assert _state(db) == before


def test_adopt_takes_its_snapshot_then_repairs_migrates_and_verifies(db, tmp_path, capsys, supabase_cli):
    old = predecessor.build(db)
    dump = tmp_path / "before-adoption.dump"
    code = main(["adopt", "--url", db, "--snapshot", str(dump)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert dump.stat().st_size > 0 and f"snapshot: {dump}" in out
    assert "history: 14 predecessor version(s) marked reverted" in out
    assert "verify: the database matches the migrations" in out
    assert _versions(db) == [m.version for m in discover()]
    with psycopg.connect(db) as conn:
        assert conn.execute("SELECT rank FROM public.profiles WHERE id = %s", (old["old_member"],)).fetchone() == (
            "vagrant",)
        assert conn.execute("SELECT count(*) FROM nexus_adopt.reverted_history").fetchone() == (14,)
    # The CLI agrees: every local version is applied remotely, and nothing else.
    r = cli(supabase_cli, "migration", "list", "--db-url", _cli_url(db))
    assert r.returncode == 0, r.stderr
    listed = _listed(r.stdout)
    assert listed and all(local == remote for local, remote in listed), r.stdout
    assert len(listed) == len(discover())
    # The snapshot holds the predecessor's rows and history, for the way back.
    from nexus.pg import bin_dir

    listing = subprocess.run([str(bin_dir() / "pg_restore"), "--list", str(dump)], capture_output=True, text=True,
                             check=True).stdout
    assert "TABLE DATA public profiles" in listing and "TABLE DATA supabase_migrations schema_migrations" in listing


def test_adopt_of_a_chain_cut_short_changes_nothing_and_the_whole_one_finishes(db, tmp_path, capsys, reference):
    # The adoption is one transaction (issue 24): never half set aside.
    predecessor.build(db)
    before = _state(db)
    work = _partial(tmp_path, 5)
    assert main(["adopt", "--url", db, "--snapshot-taken", "--dir", str(work / "supabase" / "migrations")]) == 1
    assert "stop before 20251220000100" in capsys.readouterr().err
    assert _state(db) == before
    code = main(["adopt", "--url", db, "--snapshot-taken"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "history: 14 predecessor version(s)" in out
    assert report(db, reference_url=reference).differences == []


# -- the Supabase CLI, for real ------------------------------------------------------------

def test_cli_pushes_our_chain_to_an_empty_database(db, supabase_cli, reference, capsys):
    apply_shim(db)
    r = cli(supabase_cli, "db", "push", "--db-url", _cli_url(db), "--yes")
    assert r.returncode == 0, r.stderr
    assert _versions(db) == [m.version for m in discover()]
    assert report(db, reference_url=reference).differences == []
    # nexus db migrate continues from there: nothing to apply, and it guards the files from now on.
    assert main(["migrate", "--url", db]) == 0
    assert "0 migration(s) applied" in capsys.readouterr().out
    r = cli(supabase_cli, "migration", "list", "--db-url", _cli_url(db))
    assert r.returncode == 0 and all(a == b for a, b in _listed(r.stdout)), r.stdout


def test_cli_push_refuses_a_predecessor_database_and_nexus_adopt_then_takes_it_over(db, supabase_cli, reference,
                                                                                   capsys, env, tmp_path):
    old = predecessor.build(db)
    before = _state(db)
    refused = cli(supabase_cli, "db", "push", "--db-url", _cli_url(db), "--yes")
    assert refused.returncode != 0
    assert "20240101" in refused.stdout + refused.stderr  # the remote versions it does not know
    assert len(_versions(db)) == 14

    # Even with the history repaired the CLI's way, the push (one transaction per file)
    # is refused by the set-aside, and nothing changes (issue 24).
    versions = [v for v in _versions(db)]
    r = cli(supabase_cli, "migration", "repair", "--status", "reverted", *versions, "--db-url", _cli_url(db))
    assert r.returncode == 0, r.stderr
    r = cli(supabase_cli, "db", "push", "--db-url", _cli_url(db), "--yes")
    assert r.returncode != 0 and "one file at a time" in r.stdout + r.stderr, r.stderr
    after = _state(db)
    assert after[0] == before[0]  # the catalog as it was
    assert after[1][0][:2] == before[1][0][:2] and after[1][0][3] is True  # profiles, nets; no nexus_adopt
    assert main(["adopt", "--repair-history-only", "--url", db]) == 2
    capsys.readouterr()

    assert main(["adopt", "--url", db, "--snapshot-taken"]) == 0
    capsys.readouterr()
    # from now on the CLI pushes what follows: nothing to push
    r = cli(supabase_cli, "db", "push", "--db-url", _cli_url(db), "--yes")
    assert r.returncode == 0, r.stderr
    assert report(db, reference_url=reference).differences == []
    with psycopg.connect(db) as conn:
        assert conn.execute("SELECT roles FROM public.profiles WHERE id = %s", (old["brig"],)).fetchone() == (
            ["brigged"],)
        # the CLI's repair removed the predecessor's history rows before the set-aside could keep them
        assert conn.execute("SELECT count(*) FROM nexus_adopt.reverted_history").fetchone() == (0,)
    r = cli(supabase_cli, "migration", "list", "--db-url", _cli_url(db))
    assert r.returncode == 0 and all(a == b for a, b in _listed(r.stdout)), r.stdout
    contract = _health_contract(env, db, tmp_path)
    assert (contract["status"], contract.get("fingerprint")) == ("current", "match"), contract


def _health_contract(env, url: str, tmp_path: Path) -> dict:
    """The health endpoint's contract part for the database at `url`, as the service role sees it."""
    from tests.conftest import _reset_process_state
    from tests.support import Client

    from nexus.dbtools import fingerprint

    key = "sb_secret_test-service-role-key-0123456789"
    shipped = fingerprint.write(fingerprint.from_replay(), tmp_path / "fingerprint.json")
    env.setenv("CONTRACT_FINGERPRINT_FILE", str(shipped))
    env.setenv("DATABASE_URL", url)
    env.setenv("SUPABASE_SERVICE_ROLE_KEY", key)
    _reset_process_state()
    from functions.health import app as module

    reply = Client(module.app).request("GET", headers={"authorization": f"Bearer {key}"})
    assert reply.status in (200, 503), reply
    return reply.json["contract"]


def test_nexus_migrate_continues_what_the_cli_started(db, supabase_cli, tmp_path, reference):
    apply_shim(db)
    work = _partial(tmp_path, 8)
    assert cli(supabase_cli, "db", "push", "--db-url", _cli_url(db), "--yes", workdir=work).returncode == 0
    assert len(_versions(db)) == 8
    assert len(migrate(db, log=lambda *_: None)) == len(discover()) - 8
    assert report(db, reference_url=reference).differences == []


def test_the_cli_continues_what_nexus_migrate_started(db, supabase_cli, tmp_path, reference):
    apply_shim(db)
    work = _partial(tmp_path, 8)
    migrate(db, work / "supabase" / "migrations", log=lambda *_: None)
    r = cli(supabase_cli, "db", "push", "--db-url", _cli_url(db), "--yes")
    assert r.returncode == 0, r.stderr
    assert _versions(db) == [m.version for m in discover()]
    assert report(db, reference_url=reference).differences == []


def test_plan_on_a_database_of_our_own_older_build_says_it_would_fail(db, tmp_path, capsys):
    # Built by the chain as it was before the adoption step was put first.
    older = tmp_path / "older"
    shutil.copytree(MIGRATIONS_DIR, older)
    (older / "20251208000000_adopt_predecessor_set_aside.sql").unlink()
    apply_shim(db)
    migrate(db, older, log=lambda *_: None)
    before = _versions(db)
    code = main(["adopt", "--plan", "--url", db])
    out = capsys.readouterr()
    assert code == 1
    assert "20251208000000_adopt_predecessor_set_aside.sql would fail" in out.err
    assert "earlier build of this project's own schema" in out.err and "nothing was changed" in out.err
    assert _versions(db) == before


def test_a_failed_snapshot_leaves_no_file_that_passes_for_one(db, tmp_path, capsys):
    """pg_dump stopped half-way (here: a table its role may not read) must not leave a file
    under the snapshot's name: a re-run would refuse it as existing and the operator, seeing
    it there, would go on with --snapshot-taken and no way back."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    predecessor.build(db)
    before = _state(db)
    role = f"weak_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'weak'")
        conn.execute(f"GRANT USAGE ON SCHEMA auth TO {role}")
    try:
        weak = make_conninfo(**(conninfo_to_dict(db) | {"user": role, "password": "weak"}))
        dump = tmp_path / "before-adopt.dump"
        code = main(["adopt", "--url", weak, "--snapshot", str(dump)])
        err = capsys.readouterr().err
        assert code == 1 and "the snapshot failed, nothing was changed" in err, err
        assert list(tmp_path.iterdir()) == []
        assert _state(db) == before
        # the same command, now with a role that can read everything, takes it
        assert main(["adopt", "--url", db, "--snapshot", str(dump)]) == 0
        assert dump.stat().st_size > 0
    finally:
        with psycopg.connect(db, autocommit=True) as conn:
            conn.execute(f"DROP OWNED BY {role}")
            conn.execute(f"DROP ROLE {role}")
