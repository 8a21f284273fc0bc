"""`make dev` on a `.data` database built by an older migration chain: it is
recreated from the current chain, with a message saying so, never patched."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import psycopg
import pytest

from nexus.migrate import MIGRATIONS_DIR, apply_shim, built_by_another_chain, migrate
from nexus.pg import EmbeddedPostgres
from tests.e2e.devstack import running_dev_stack


def _older_chain(tmp_path):
    """The chain as it was before the adoption step was put first."""
    folder = tmp_path / "older"
    shutil.copytree(MIGRATIONS_DIR, folder)
    (folder / "20251208000000_adopt_predecessor_set_aside.sql").unlink()
    return folder


@pytest.fixture
def data_dir():
    """Outside pytest's tmp tree: another session's pytest resets that to 0700,
    which the unprivileged server user then cannot traverse."""
    root = Path(tempfile.mkdtemp(prefix="nexus-older-chain-"))
    root.chmod(0o755)
    yield root / "data"
    shutil.rmtree(root, ignore_errors=True)


def test_make_dev_recreates_a_database_built_by_an_older_chain(tmp_path, data_dir):
    data = data_dir
    data.mkdir()
    server = EmbeddedPostgres(data / "pg", fast=True)
    server.start()
    try:
        apply_shim(server.url)
        migrate(server.url, _older_chain(tmp_path), log=lambda *_: None)
        with psycopg.connect(server.url, autocommit=True) as conn:
            conn.execute("CREATE TABLE public.left_by_the_older_chain (id int)")
        assert "comes before migrations it already has" in built_by_another_chain(server.url)
    finally:
        server.stop()

    with running_dev_stack(data) as stack:
        log = (data / "dev.log").read_text()
        assert "was built by an older migration chain" in log and "recreating it" in log
        with psycopg.connect(stack["dev"]["DATABASE_URL"]) as conn:
            assert conn.execute("SELECT to_regclass('public.left_by_the_older_chain')").fetchone() == (None,)
            assert conn.execute("SELECT count(*) FROM supabase_migrations.schema_migrations "
                                "WHERE version = '20251208000000'").fetchone() == (1,)
        assert built_by_another_chain(stack["dev"]["DATABASE_URL"]) is None


def test_an_edited_or_removed_file_is_another_chain(pg, tmp_path):
    name = "older_chain_check"
    url = pg.create_database(name)
    try:
        folder = tmp_path / "m"
        shutil.copytree(MIGRATIONS_DIR, folder)
        apply_shim(url)
        migrate(url, folder, log=lambda *_: None)
        assert built_by_another_chain(url, folder) is None
        last = sorted(folder.glob("*.sql"))[-1]
        original = last.read_text()
        last.write_text(original + "\n-- edited\n")
        assert "changed after it was applied" in built_by_another_chain(url, folder)
        last.unlink()
        assert "no longer in" in built_by_another_chain(url, folder)
    finally:
        pg.drop_database(name)
