"""`nexus db adopt`: take over the predecessor's database (docs/cutover.md).

  --plan     changes nothing: runs the history repair and every pending
             migration inside one transaction that is rolled back, and prints
             what they would do (history rows, migrations, each conversion
             with the rows it touches, rows closed or cleared, ranks above
             scout members may have set themselves, foreign objects and their
             warnings). The transaction holds its locks for its few seconds.
  (default)  refuses to start without --snapshot-taken or --snapshot FILE
             (a pg_dump it takes itself); then repairs the history and applies
             the whole chain, set-aside through conversion, as ONE transaction
             (a failure anywhere leaves the predecessor's database as it was),
             verifies and prints what it did.
  --repair-history-only
             refused: it served `supabase db push`, which applies each file in
             its own transaction and so cannot adopt safely; the set-aside
             migration refuses to run that way.

The history repair is what `supabase migration repair --status reverted`
does to the predecessor's versions (all older than ours), plus a record of
them in nexus_adopt.reverted_history.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from nexus.migrate import (
    _BOOKKEEPING, _LOCK_KEY, ADOPT_CONVERT_VERSION, FIRST_VERSION, MIGRATIONS_DIR, Migration, discover,
)

REPAIR_SQL = f"""
CREATE SCHEMA IF NOT EXISTS nexus_adopt;
REVOKE ALL ON SCHEMA nexus_adopt FROM PUBLIC;
CREATE TABLE IF NOT EXISTS nexus_adopt.reverted_history (
  version text PRIMARY KEY, name text, statements text[], reverted_at timestamptz NOT NULL DEFAULT now());
INSERT INTO nexus_adopt.reverted_history (version, name, statements)
SELECT version, name, statements FROM supabase_migrations.schema_migrations WHERE version < '{FIRST_VERSION}'
ON CONFLICT (version) DO NOTHING;
DELETE FROM supabase_migrations.schema_migrations WHERE version < '{FIRST_VERSION}';
"""

# Conversions that close, cancel or clear rows (printed apart in the plan).
_CLOSING = ("open rows closed", "ACTIVE -> COMPLETED", "duplicate PENDING -> CANCELLED", "self-bridge removed",
            "second direction removed", "not adopted", "code changed", "duplicate code suffixed")


def history_to_repair(conn) -> list[tuple[str, str | None]]:
    if conn.execute("SELECT to_regclass('supabase_migrations.schema_migrations') IS NULL").fetchone()[0]:
        return []
    return conn.execute("SELECT version, name FROM supabase_migrations.schema_migrations "
                        "WHERE version < %s ORDER BY version", (FIRST_VERSION,)).fetchall()


def pending(conn, directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    have: set[str] = set()
    if not conn.execute("SELECT to_regclass('supabase_migrations.schema_migrations') IS NULL").fetchone()[0]:
        have = {v for (v,) in conn.execute("SELECT version FROM supabase_migrations.schema_migrations")}
    return [m for m in discover(directory) if m.version not in have]


def is_predecessor(conn) -> bool:
    from nexus.migrate import is_predecessor as check

    return check(conn)


def _record(conn) -> dict:
    """What nexus_adopt says was done (inside the plan's transaction, or after adopting)."""
    from nexus.dbtools import foreign

    out: dict = {"conversions": [], "holds": [], "guests": [], "not_adopted": [], "foreign": [], "warnings": []}
    if conn.execute("SELECT to_regclass('nexus_adopt.conversions') IS NULL").fetchone()[0]:
        return out
    out["conversions"] = conn.execute("SELECT step, rows, detail FROM nexus_adopt.conversions ORDER BY ord").fetchall()
    if conn.execute("SELECT to_regclass('nexus_adopt.holds') IS NOT NULL").fetchone()[0]:
        out["holds"] = conn.execute(
            "SELECT member_id::text, callsign, held_rank, held_roles, status, cardinality(held_skills) "
            "FROM nexus_adopt.holds "
            "ORDER BY status <> 'pending', held_roles = '{}', member_id").fetchall()
        out["guests"] = conn.execute(
            "SELECT member_id::text, email, guest_expires_at FROM nexus_adopt.guests "
            "ORDER BY guest_expires_at NULLS FIRST, member_id").fetchall()
        out["not_adopted"] = conn.execute(
            "SELECT tbl, reason, rows FROM nexus_adopt.not_adopted ORDER BY tbl, reason").fetchall()
    registry = foreign.load(conn)
    out["foreign"] = sorted(registry.objects)
    out["warnings"] = foreign.warnings(conn, registry)
    return out


def _print_record(rec: dict, log=print) -> None:
    from nexus.admin import plain

    steps = [c for c in rec["conversions"] if not c[0].startswith(("set aside ", "foreign key ", "policy "))]
    log(f"conversions ({len(steps)}):")
    for step, rows, detail in steps:
        log(f"  {rows:>7}  {step}" + (f"  ({detail})" if detail else ""))
    closing = [c for c in steps if c[1] and any(k in c[0] for k in _CLOSING)]
    log(f"rows closed, cancelled, cleared or left behind ({sum(c[1] for c in closing)}):")
    for step, rows, _ in closing:
        log(f"  {rows:>7}  {step}")
    moved = [c for c in rec["conversions"] if c[0].startswith(("set aside ", "foreign key ", "policy "))]
    if moved:
        log("kept and re-pointed:")
        for step, rows, detail in moved:
            log(f"  {step}" + (f": {rows} row(s)" if step.startswith("set aside") else ""))
    log(f"rows not adopted ({sum(r[2] for r in rec['not_adopted'])}), kept in nexus_adopt "
        "(SELECT * FROM nexus_adopt.not_adopted):")
    for tbl, reason, rows in rec["not_adopted"]:
        log(f"  {rows:>7}  {tbl}: {reason}")
    pending = [h for h in rec["holds"] if h[4] == "pending"]
    log(f"powers held until an operator confirms them ({len(pending)}): `nexus admin holds`, then "
        "`nexus admin hold confirm|decline USER --reason TEXT`; responders first")
    for member, callsign, rank, roles, _status, skills in pending:
        held = ", ".join(([f"rank {rank}"] if rank else []) + ([f"roles {' '.join(roles)}"] if roles else [])
                         + ([f"certifications of {skills} skill(s)"] if skills else []))
        log(f"  {member}  {plain(callsign)}  {plain(held)}")
    log(f"the predecessor's guests, now vagrants without a callsign ({len(rec['guests'])}):")
    for member, email, expires in rec["guests"]:
        log(f"  {member}  {plain(email)}  guest_expires_at {expires.isoformat() if expires else '-'}")
    log(f"foreign objects, left in place ({len(rec['foreign'])}):")
    for kind, name in rec["foreign"]:
        log(f"  {kind} {name}")
    for w in rec["warnings"]:
        log(f"  {w}")


def plan(url: str, directory: Path = MIGRATIONS_DIR, log=print) -> dict:
    """Everything adopting would do, computed in a transaction that is rolled back."""
    import psycopg

    with psycopg.connect(url, connect_timeout=10, prepare_threshold=None) as conn:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        history = history_to_repair(conn)
        todo = pending(conn, directory)
        log(f"history rows to repair (marked reverted, kept in nexus_adopt.reverted_history): {len(history)}")
        for version, name in history:
            log(f"  {version}  {name or ''}")
        log(f"migrations to apply ({len(todo)}):")
        for m in todo:
            log(f"  {m.path.name}")
        if history:
            conn.execute(REPAIR_SQL)
        conn.execute(_BOOKKEEPING)
        if any(m.version == FIRST_VERSION for m in todo) and is_predecessor(conn):
            if not any(m.version == ADOPT_CONVERT_VERSION for m in todo):
                conn.rollback()
                raise PlanError(f"the migrations stop before {ADOPT_CONVERT_VERSION} (the conversion); "
                                "the set-aside never runs without it")
            conn.execute("SELECT set_config('nexus.adopting', 'one transaction', true)")
        for m in todo:
            try:
                conn.execute(m.sql)
            except psycopg.Error as e:
                conn.rollback()
                raise PlanError(f"{m.path.name} would fail: {str(e).strip().splitlines()[0]}") from None
        rec = _record(conn)
        conn.rollback()
    _print_record(rec, log)
    log("plan: nothing was changed")
    return {"history": history, "pending": [m.path.name for m in todo], **rec}


class PlanError(RuntimeError):
    pass


def _reverted(url: str, history: list) -> bool:
    import psycopg

    with psycopg.connect(url, connect_timeout=10) as conn:
        return not history_to_repair(conn)


def snapshot(url: str, path: Path) -> Path:
    """A pg_dump (custom format) of the whole database, to restore with pg_restore."""
    from nexus.pg import bin_dir

    path = path.resolve()
    if path.exists():
        raise FileExistsError(f"{path} exists; name a new file for the snapshot")
    # Written beside it and renamed when pg_dump succeeds: a dump stopped half-way (an error, a
    # kill) never lies under the snapshot's name for a re-run to take as taken.
    partial = path.with_name(path.name + ".partial")
    try:
        subprocess.run([str(bin_dir() / "pg_dump"), "--format=custom", "--no-owner", "--file", str(partial), url],
                       check=True, capture_output=True, text=True)
        partial.rename(path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def adopt(url: str, directory: Path = MIGRATIONS_DIR, log=print) -> int:
    """Repair, migrate, verify, print. Returns the exit code (0: in the contract)."""
    import psycopg

    from nexus import migrate
    from nexus.dbtools.verify import report

    with psycopg.connect(url, connect_timeout=10) as conn:
        history = history_to_repair(conn)
    # The set-aside migration repairs the history inside the one transaction.
    applied = migrate.migrate(url, directory, log=lambda line: log(f"  {line}"))
    if history:
        history = history if _reverted(url, history) else []
    log(f"history: {len(history)} predecessor version(s) marked reverted"
        + (" (" + ", ".join(v for v, _ in history) + ")" if history else ""))
    log(f"migrations: {len(applied)} applied")
    with psycopg.connect(url, connect_timeout=10) as conn:
        _print_record(_record(conn), log)
    result = report(url, directory=directory)
    if result.differences:
        log(f"verify: {len(result.differences)} difference(s) in what is ours:")
        for d in result.differences:
            log(f"  {d}")
        return 1
    log(f"verify: the database matches the migrations ({len(result.foreign)} foreign object(s) apart)")
    return 0
