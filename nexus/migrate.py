"""Apply `supabase/migrations/*.sql` in order, recording version and checksum.

Records versions in `supabase_migrations.schema_migrations` (the table the
Supabase CLI uses, so `supabase db push` and this runner agree on what is
applied) and a SHA-256 of each file in `supabase_migrations.nexus_checksums`.
Re-running is a no-op; a file edited after it was applied is refused, and so
is Supabase's transaction pooler (port 6543), where the runner's lock cannot hold.
Each file is one transaction, except on the predecessor's database, where the
whole chain (set-aside through conversion) is one (docs/cutover.md).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MIGRATIONS_DIR = ROOT / "supabase" / "migrations"
SHIM_PATH = ROOT / "supabase" / "platform" / "shim.sql"
_NAME = re.compile(r"^(\d{14})_([a-z0-9_]+)\.sql$")
_LOCK_KEY = 7410_2025


# Supavisor's transaction mode (and Supabase's dedicated PgBouncer) listens on
# 6543 and may run each transaction on a different server connection: the
# runner's session advisory lock would be taken on one and its unlock sent to
# another, so concurrent runs are not excluded and the lock stays held on a
# pooled connection, where the next run to land waits forever.
TRANSACTION_POOLER_PORT = "6543"


class MigrationError(RuntimeError):
    pass


def check_session_url(url: str, *, allow_transaction_pooler: bool = False) -> None:
    """Refuse a malformed URL, or one on Supabase's transaction pooler port, naming no password."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    try:
        params = conninfo_to_dict(url)
    except psycopg.Error:
        # libpq's parse errors quote the whole string, password included.
        raise MigrationError("the database URL is not a valid connection string "
                             "(percent-encode blanks, @, / and # in the password)") from None
    if allow_transaction_pooler:
        return
    hosts = str(params.get("host") or "localhost").split(",")
    ports = [p.strip() for p in str(params.get("port") or "").split(",")]
    for i, port in enumerate(ports):
        if port == TRANSACTION_POOLER_PORT:
            host = hosts[i] if i < len(hosts) else hosts[-1]
            raise MigrationError(
                f"refusing to migrate through {host}:{port}, Supabase's transaction pooler: the runner holds "
                "a session advisory lock, which a transaction pooler cannot keep. Use the session pooler or "
                "the direct connection on port 5432 (Supabase dashboard > Connect), or pass "
                "--allow-transaction-pooler if this server is not a transaction pooler.")


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    path: Path

    @property
    def sql(self) -> str:
        return self.path.read_text()

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    out = []
    for path in sorted(directory.glob("*.sql")):
        m = _NAME.match(path.name)
        if not m:
            raise MigrationError(f"{path.name}: migration files are named YYYYMMDDHHMMSS_name.sql")
        out.append(Migration(m.group(1), m.group(2), path))
    versions = [m.version for m in out]
    if len(versions) != len(set(versions)):
        raise MigrationError("two migration files share a version")
    return out


_BOOKKEEPING = """
CREATE SCHEMA IF NOT EXISTS supabase_migrations;
CREATE TABLE IF NOT EXISTS supabase_migrations.schema_migrations (
  version text PRIMARY KEY, statements text[], name text
);
CREATE TABLE IF NOT EXISTS supabase_migrations.nexus_checksums (
  version text PRIMARY KEY, checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now()
);
"""


def apply_shim(url: str, *, allow_transaction_pooler: bool = False) -> None:
    import psycopg

    check_session_url(url, allow_transaction_pooler=allow_transaction_pooler)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            conn.execute(SHIM_PATH.read_text())
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))


def applied(conn) -> dict[str, str | None]:
    """version -> checksum (None when applied by another tool, e.g. `supabase db push`)."""
    rows = conn.execute(
        """SELECT m.version, c.checksum FROM supabase_migrations.schema_migrations m
           LEFT JOIN supabase_migrations.nexus_checksums c USING (version)"""
    ).fetchall()
    return {v: c for v, c in rows}


@dataclass
class Plan:
    """How a database stands against the migrations folder."""

    pending: list[Migration]
    edited: list[Migration]  # applied, but the file changed since
    adopted: list[Migration]  # applied by another tool; checksum recorded now
    unknown: list[str]  # applied versions with no file here

    def refusal(self) -> str | None:
        if not self.edited:
            return None
        names = ", ".join(m.path.name for m in self.edited)
        return (f"refusing to migrate: {names} changed after being applied "
                "(add a new migration instead of editing an applied one)")


def plan(conn, directory: Path = MIGRATIONS_DIR) -> Plan:
    migrations = discover(directory)
    have = applied(conn)
    shipped = {m.version for m in migrations}
    return Plan(
        pending=[m for m in migrations if m.version not in have],
        edited=[m for m in migrations if have.get(m.version) not in (None, m.checksum)],
        adopted=[m for m in migrations if m.version in have and have[m.version] is None],
        unknown=sorted(v for v in have if v not in shipped),
    )


# Our chain's first version; older versions in a history are the predecessor's.
FIRST_VERSION = "20251208000000"


def built_by_another_chain(url: str, directory: Path = MIGRATIONS_DIR) -> str | None:
    """Why a local database was built by a different (older) migration chain, or None.

    A file applied and since edited, a version applied from our range that no
    file here has, or a file older than the newest applied one that was never
    applied: the chain was rewritten since, and this database cannot follow it.
    """
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        if conn.execute("SELECT to_regclass('supabase_migrations.schema_migrations') IS NULL").fetchone()[0]:
            return None
        if conn.execute("SELECT to_regclass('supabase_migrations.nexus_checksums') IS NULL").fetchone()[0]:
            conn.execute(_BOOKKEEPING)
        p = plan(conn, directory)
    if p.edited:
        return f"{p.edited[0].path.name} changed after it was applied"
    ours = [v for v in p.unknown if v >= FIRST_VERSION]
    if ours:
        return f"it has migration {ours[0]}, which is no longer in {directory.name}/"
    applied = [m.version for m in discover(directory) if m not in p.pending]
    late = [m for m in p.pending if applied and m.version < max(applied)]
    if late:
        return f"{late[0].path.name} comes before migrations it already has"
    return None


def migrate(url: str, directory: Path = MIGRATIONS_DIR, log=print, *,
            allow_transaction_pooler: bool = False) -> list[str]:
    """Apply pending migrations; returns the versions applied now.

    Every applied file is checked before anything runs, so an edited one
    stops the run with nothing half-applied.
    """
    import psycopg

    check_session_url(url, allow_transaction_pooler=allow_transaction_pooler)
    done: list[str] = []
    with psycopg.connect(url, autocommit=True) as conn:
        # One runner at a time, whoever else tries to migrate this database.
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            conn.execute(_BOOKKEEPING)
            p = plan(conn, directory)
            refusal = p.refusal()
            if refusal:
                raise MigrationError(refusal)
            if p.unknown:
                log(f"note: applied versions with no file here: {', '.join(p.unknown)}")
            for m in p.adopted:
                # Applied by `supabase db push`: trust the file as it is now.
                conn.execute(
                    "INSERT INTO supabase_migrations.nexus_checksums (version, checksum) VALUES (%s, %s)",
                    (m.version, m.checksum),
                )
            if any(m.version == FIRST_VERSION for m in p.pending) and is_predecessor(conn):
                done = _adopt_in_one_transaction(conn, p.pending, log)
                return done
            for m in p.pending:
                try:
                    with conn.transaction():
                        conn.execute(m.sql)
                        _record(conn, m)
                except psycopg.Error as e:
                    raise MigrationError(f"{m.path.name} failed and was rolled back: {e}") from e
                log(f"applied {m.path.name}")
                done.append(m.version)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return done


# The adoption's last file: the set-aside (FIRST_VERSION) through this one run
# as one transaction on a predecessor's database, or not at all.
ADOPT_CONVERT_VERSION = "20251220000100"


def is_predecessor(conn) -> bool:
    """A database in the predecessor's shape that our chain has not touched yet."""
    return conn.execute("SELECT to_regclass('public.profiles') IS NOT NULL "
                        "AND to_regclass('public.livekit_rooms') IS NULL").fetchone()[0]


def _record(conn, m: Migration) -> None:
    conn.execute("INSERT INTO supabase_migrations.schema_migrations (version, name, statements) "
                 "VALUES (%s, %s, ARRAY[%s])", (m.version, m.name, m.sql))
    conn.execute("INSERT INTO supabase_migrations.nexus_checksums (version, checksum) VALUES (%s, %s)",
                 (m.version, m.checksum))


def _adopt_in_one_transaction(conn, pending: list[Migration], log) -> list[str]:
    """Every pending migration, set-aside through conversion, in one transaction.

    The set-aside file refuses to run unless `nexus.adopting` says so (as
    `supabase db push`, one transaction per file, never does): a failure
    anywhere leaves the predecessor's database exactly as it was.
    """
    import psycopg

    if not any(m.version == ADOPT_CONVERT_VERSION for m in pending):
        raise MigrationError("refusing to adopt the predecessor's database: the migrations to apply stop before "
                             f"{ADOPT_CONVERT_VERSION} (the conversion), and the set-aside must not run without it")
    current = None
    try:
        with conn.transaction():
            conn.execute("SELECT set_config('nexus.adopting', 'one transaction', true)")
            for m in pending:
                current = m
                conn.execute(m.sql)
                _record(conn, m)
    except psycopg.Error as e:
        name = current.path.name if current else "the adoption"
        raise MigrationError(f"{name} failed; the adoption was rolled back as a whole and the predecessor's "
                             f"database is as it was: {e}") from e
    for m in pending:
        log(f"applied {m.path.name}")
    log(f"adopted the predecessor's database: {len(pending)} migration(s) in one transaction")
    return [m.version for m in pending]


_AUTO = object()


def prepare_platform(url: str, *, auth_binary=_AUTO) -> None:
    """What a Supabase project provides, in Supabase's order: the auth server's own migrations
    make `auth` (when its binary is here; `auth_binary=None` for the shim's `auth.users`), then
    the shim adds the rest of the platform. A database whose `auth` the shim made keeps it."""
    from nexus import auth_server

    binary = auth_server.find_binary() if auth_binary is _AUTO else auth_binary
    if binary is not None and auth_server.made_by_auth_server(url) is not False:
        auth_server.prepare_database(url, binary)
    apply_shim(url)


def prepare_local(url: str, log=print, *, auth_binary=_AUTO) -> list[str]:
    """Platform (auth server, shim) plus migrations: what a fresh local database needs."""
    prepare_platform(url, auth_binary=auth_binary)
    return migrate(url, log=log)
