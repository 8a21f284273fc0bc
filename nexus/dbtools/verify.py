"""`nexus db verify`: does a live database match what the migrations build?

The expected schema is not written down twice: the migrations are replayed
(platform shim first) into a scratch PostgreSQL, both catalogs are read into
snapshots, and every difference is named. The live database's migration
bookkeeping is compared with the folder too, so "not applied yet" reads
differently from "changed by hand".
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nexus.dbtools import catalog, foreign, scratch
from nexus.dbtools.diff import Difference, compare
from nexus.migrate import MIGRATIONS_DIR, plan


def connect(url: str):
    import psycopg

    # prepare_threshold=None: the URL may be Supavisor in transaction mode.
    return psycopg.connect(url, autocommit=True, prepare_threshold=None, connect_timeout=10)


def expected_snapshot(directory: Path = MIGRATIONS_DIR, bin_path: Path | None = None) -> catalog.Snapshot:
    with scratch.scratch_server(bin_path) as server:
        scratch.replay(server.url, directory)
        with connect(server.url) as conn:
            return catalog.snapshot(conn)


def migration_differences(conn, directory: Path = MIGRATIONS_DIR) -> list[Difference]:
    has_table = conn.execute("SELECT to_regclass('supabase_migrations.schema_migrations') IS NOT NULL").fetchone()[0]
    if not has_table:
        return [Difference("missing", "migration", "(all)", "")]
    has_checksums = conn.execute("SELECT to_regclass('supabase_migrations.nexus_checksums') IS NOT NULL").fetchone()[0]
    if not has_checksums:
        # Applied only by `supabase db push`: versions are all we can compare.
        have = {v for (v,) in conn.execute("SELECT version FROM supabase_migrations.schema_migrations")}
        from nexus.migrate import discover

        files = discover(directory)
        out = [Difference("missing", "migration", m.path.name) for m in files if m.version not in have]
        shipped = {m.version for m in files}
        return out + [Difference("extra", "migration", v) for v in sorted(have - shipped)]
    p = plan(conn, directory)
    return ([Difference("missing", "migration", m.path.name) for m in p.pending]
            + [Difference("changed", "migration", m.path.name, "file edited after it was applied") for m in p.edited]
            + [Difference("extra", "migration", v) for v in p.unknown])


@dataclass
class Report:
    differences: list[Difference]  # in what is ours: each one fails the contract
    foreign: list[Difference]  # objects recorded as not ours (an adopted database's), left in place
    warnings: list[foreign.Warning_]  # what is unsafe about those


def report(live_url: str, *, reference_url: str | None = None, directory: Path = MIGRATIONS_DIR,
           bin_path: Path | None = None) -> Report:
    """The live database against the replayed migrations (or `reference_url`), foreign objects apart."""
    if reference_url:
        with connect(reference_url) as conn:
            expected = catalog.snapshot(conn)
    else:
        expected = expected_snapshot(directory, bin_path)
    with connect(live_url) as conn:
        live = catalog.snapshot(conn)
        bookkeeping = migration_differences(conn, directory)
        registry = foreign.load(conn)
        ours, theirs = foreign.split(compare(expected, live), live, registry)
        return Report(bookkeeping + ours, theirs, foreign.warnings(conn, registry))


def verify(live_url: str, *, reference_url: str | None = None, directory: Path = MIGRATIONS_DIR,
           bin_path: Path | None = None) -> list[Difference]:
    """Differences in what is ours between the live database and the replayed migrations."""
    return report(live_url, reference_url=reference_url, directory=directory, bin_path=bin_path).differences
