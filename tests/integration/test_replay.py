"""The migrations replay deterministically, from zero, on every server we support.

Two fresh replays must give byte-identical normalized schema dumps (both
pg_dump's and our catalog snapshot, which is what `nexus db verify`
compares). Where a distribution's PostgreSQL 15 (or 16, 17) is installed
under /usr/lib/postgresql/<major>/bin, the migrations are replayed there too
and must produce the same contract as on the embedded server.
"""

from __future__ import annotations

import re
import subprocess
import uuid

import psycopg
import pytest

from nexus.dbtools import catalog, scratch
from nexus.pg import bin_dir


def _replayed(pg) -> tuple[str, str]:
    name = f"replay_{uuid.uuid4().hex[:10]}"
    url = pg.create_database(name)
    scratch.replay(url)
    return name, url


def normalized_dump(url: str) -> str:
    out = subprocess.run([str(bin_dir() / "pg_dump"), "--schema-only", "--no-owner", url],
                         check=True, capture_output=True, text=True).stdout
    # pg_dump 17.6+/18 brackets its output with a random \restrict key, and
    # names its own version; neither is part of the schema.
    out = re.sub(r"^\\(un)?restrict .*$", "", out, flags=re.M)
    return re.sub(r"^-- Dumped (from|by) .*$", "", out, flags=re.M)


def snapshot(url: str) -> catalog.Snapshot:
    with psycopg.connect(url) as conn:
        return catalog.snapshot(conn)


# Given two empty databases, when the shim and every migration are replayed
# into each, then their schema dumps and contract snapshots are identical.
def test_two_fresh_replays_are_identical(pg):
    (a_name, a), (b_name, b) = _replayed(pg), _replayed(pg)
    try:
        dump_a, dump_b = normalized_dump(a), normalized_dump(b)
        assert "CREATE TABLE public.profiles" in dump_a
        assert dump_a == dump_b
        assert catalog.dump(snapshot(a)) == catalog.dump(snapshot(b))
    finally:
        pg.drop_database(a_name)
        pg.drop_database(b_name)


def test_replay_covers_every_migration(pg):
    from nexus.migrate import discover

    name, url = _replayed(pg)
    try:
        with psycopg.connect(url) as conn:
            applied = [v for (v,) in conn.execute(
                "SELECT version FROM supabase_migrations.schema_migrations ORDER BY version")]
        assert applied == [m.version for m in discover()]
    finally:
        pg.drop_database(name)


@pytest.fixture(scope="module")
def embedded_snapshot():
    with scratch.scratch_server() as server:
        scratch.replay(server.url)
        return snapshot(server.url)


# The design promises PostgreSQL 15 through 18; the embedded server is 18.
# 15 always reports (run or skip); 16 and 17 join when they are installed.
MAJORS = [15] + [m for m in (16, 17) if scratch.distro_bin(m)]


@pytest.mark.parametrize("major", MAJORS)
def test_replay_on_distribution_postgres(major, embedded_snapshot):
    binaries = scratch.distro_bin(major)
    if binaries is None:
        pytest.skip(f"PostgreSQL {major} server binaries not found at "
                    f"{scratch.DISTRO_BIN.format(major=major)} (apt-get install postgresql-{major})")
    with scratch.scratch_server(binaries) as server:
        assert scratch.server_version(server.url) // 10000 == major
        scratch.replay(server.url)
        assert catalog.dump(snapshot(server.url)) == catalog.dump(embedded_snapshot)
