"""The database port: call one SQL function by name, get its JSON result.

Every state change is one SQL function in the migrations, taking named
arguments and returning jsonb, so both transports have identical semantics:

- PsycopgTransport: psycopg 3 straight to Postgres (production: Supavisor's
  transaction pooler on port 6543, hence no prepared statements). One
  connection per thread, opened lazily and reused across invocations; a
  statement is sent once, never re-sent after a broken connection.
- SupabaseRpcTransport: the `supabase` client's RPC over PostgREST, for
  deployments that hold only the service role key. Imported only if used.

The functions are SECURITY DEFINER and executable only by service_role (and
their owner), so the caller's role does not change what they may do.
"""

from __future__ import annotations

import logging
import re
import select
import threading
import time
from typing import Any, Protocol

from shared.config import ConfigError
from shared.errors import ApiError, unavailable

log = logging.getLogger("nexus.db")

_IDENT = re.compile(r"^[a-z_][a-z0-9_]*$")


class DatabaseUnavailable(Exception):
    """The database could not be reached; callers answer 503 so clients retry."""


class DatabaseError(Exception):
    """The database refused the call: a RAISE in the function, a constraint, a missing function.

    `sqlstate` is Postgres's SQLSTATE (e.g. "P0001", "23505"), the same from
    both transports (PostgREST's "function not found", PGRST202, arrives as
    42883 as from Postgres); for other errors PostgREST raises itself it is
    PostgREST's code. Handlers map the states they expect; anything else
    becomes a 500 without internals.
    """

    def __init__(self, sqlstate: str | None, message: str):
        super().__init__(f"{sqlstate}: {message}")
        self.sqlstate = sqlstate
        self.message = message


class Database(Protocol):
    def call(self, function: str, **args: Any) -> Any: ...

    def close(self) -> None: ...


def _check_names(function: str, args: dict[str, Any]) -> None:
    # Names are interpolated into SQL (psycopg) and URLs (PostgREST).
    for name in (function, *args):
        if not _IDENT.match(name):
            raise ValueError(f"not an SQL identifier: {name!r}")


# A kept connection idle longer than this is pinged before a statement goes out
# on it: long enough that back-to-back requests never pay the round trip, short
# enough that a Lambda thawed after a pause checks before it sends.
IDLE_PING_SECONDS = 5.0

# What libpq accepts as a host: a name or address, or a Unix socket directory
# (/...) or abstract socket (@...). A host holding "@" or blanks is a password
# with an unencoded "@", and libpq's errors would quote it.
_HOST = re.compile(r"[A-Za-z0-9._:%-]*|[/@]\S*")


class PsycopgTransport:
    """One connection per thread, opened lazily and kept for the container's life.

    A statement is sent at most once. If the connection breaks after it was
    sent, the server may have committed it (the answer was lost on the way
    back), so the call fails as unavailable instead of re-sending: a second
    `launch_rescue_flare` or `academy_accept` would answer as if the first had
    never happened. Dead connections are caught before sending instead: a kept
    connection with anything to read (the pooler's goodbye, end of file) is
    replaced at the cost of one poll, and one idle for IDLE_PING_SECONDS is
    pinged first, which is safe to lose and retry.
    """

    def __init__(self, url: str, connect_timeout: int = 5, idle_ping_seconds: float = IDLE_PING_SECONDS):
        self._password = _check_database_url(url)
        self.url = url
        self.connect_timeout = connect_timeout
        self.idle_ping_seconds = idle_ping_seconds
        self._local = threading.local()
        self._open: set[Any] = set()
        self._lock = threading.Lock()
        self._sql: dict[tuple[str, ...], str] = {}  # by (function, *argument names)

    def _cursor(self) -> Any:
        """The thread's cursor (reused: a new one per call costs more than the liveness check)."""
        local = self._local
        conn = getattr(local, "conn", None)
        if conn is not None:
            if self._alive(conn):
                return local.cur
            self._discard(conn)
        return self._connect()

    def _connect(self) -> Any:
        import psycopg

        try:
            conn = psycopg.connect(
                self.url,
                autocommit=True,
                prepare_threshold=None,  # Supavisor transaction mode
                connect_timeout=self.connect_timeout,
                application_name="nomadnexus-functions",
            )
        except psycopg.OperationalError as e:
            log.warning("database connection failed: %s", _redact(_first_line(e), self._password))
            raise DatabaseUnavailable(type(e).__name__) from None
        except psycopg.Error:
            # libpq could not use the URL (ProgrammingError); its message quotes the URL.
            raise ConfigError("Invalid configuration: DATABASE_URL") from None
        local = self._local
        local.conn, local.cur, local.used_at = conn, conn.cursor(), time.time()
        local.poller = select.poll()
        local.poller.register(conn.fileno(), select.POLLIN)
        with self._lock:
            self._open.add(conn)
        return local.cur

    def _alive(self, conn: Any) -> bool:
        """Whether a kept connection can take a statement, checked without risking one."""
        if conn.closed or conn.broken:
            return False
        # Idle in autocommit, the server has nothing to say: anything to read is
        # a FATAL before it hung up, or the end of the stream. One poll, no round trip.
        if self._local.poller.poll(0):
            return False
        # The wall clock, not monotonic: a frozen Lambda may not advance the latter.
        idle = time.time() - self._local.used_at
        if 0 <= idle < self.idle_ping_seconds:
            return True
        # A pooler, NAT or failover can drop a connection without a FIN reaching
        # a frozen container; a lost ping costs nothing, a lost statement might.
        import psycopg

        try:
            conn.execute("SELECT 1")
        except psycopg.Error:
            return False
        self._local.used_at = time.time()
        return True

    def _discard(self, conn: Any) -> None:
        self._local.conn = self._local.cur = self._local.poller = None
        with self._lock:
            self._open.discard(conn)
        try:
            conn.close()
        except Exception:
            pass

    def call(self, function: str, **args: Any) -> Any:
        import psycopg
        from psycopg.types.json import Jsonb

        shape = (function, *args)
        sql = self._sql.get(shape)
        if sql is None:
            _check_names(function, args)
            named = ", ".join(f"{k} => %({k})s" for k in args)
            sql = self._sql[shape] = f"SELECT public.{function}({named})"
        params = {k: (Jsonb(v) if isinstance(v, (dict, list)) else v) for k, v in args.items()}
        cur = self._cursor()
        conn = cur.connection
        try:
            cur.execute(sql, params)
            row = cur.fetchone()
        except psycopg.Error as e:
            if not (conn.broken or conn.closed):
                self._local.used_at = time.time()
                # The server answered (a RAISE, a constraint, a statement
                # timeout): the connection is fine and retrying would not help.
                if isinstance(e, psycopg.errors.QueryCanceled):
                    raise DatabaseUnavailable("QueryCanceled") from None
                raise DatabaseError(e.sqlstate, _first_line(e)) from None
            self._discard(conn)
            # Not retried: the statement may have committed before the answer
            # was lost (see the class docstring). Clients retry a 503.
            log.warning("database call failed: %s", _redact(_first_line(e), self._password))
            raise DatabaseUnavailable(type(e).__name__) from None
        self._local.used_at = time.time()
        return row[0] if row else None

    def close(self) -> None:
        with self._lock:
            conns, self._open = self._open, set()
        for c in conns:
            try:
                c.close()
            except Exception:
                pass
        self._local = threading.local()


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:300]


def _check_database_url(url: str) -> str | None:
    """The URL's password (to keep it out of logs); ConfigError naming only the variable if unusable."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    invalid = ConfigError("Invalid configuration: DATABASE_URL")
    try:
        params = conninfo_to_dict(url)
    except (psycopg.Error, TypeError, ValueError):
        raise invalid from None  # libpq's parse errors quote the URL, password included
    hosts = str(params.get("host") or "").split(",")
    ports = str(params.get("port") or "").split(",")
    if not all(_HOST.fullmatch(h) for h in hosts) or not all(p == "" or (p.isascii() and p.isdigit()) for p in ports):
        raise invalid
    password = params.get("password")
    return str(password) if password else None


# What an HTTP header may carry: a key with a stray newline, blank or non-ASCII
# character fails inside httpx, whose errors quote the header.
_HEADER_SAFE = re.compile(r"[\x21-\x7e]+")


def _check_supabase(url: str, key: str) -> None:
    """ConfigError naming the variable (never its value) if httpx could not send with it."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        usable = parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
    except ValueError:  # a bad port or IPv6 literal
        usable = False
    if not usable or not _HEADER_SAFE.fullmatch(url):
        raise ConfigError("Invalid configuration: SUPABASE_URL")
    if not _HEADER_SAFE.fullmatch(key):
        raise ConfigError("Invalid configuration: SUPABASE_SERVICE_ROLE_KEY")


def _redact(message: str, secret: str | None) -> str:
    return message.replace(secret, "***") if secret else message


# PostgREST answers these when it cannot reach Postgres (PGRST000-003) or
# Postgres cannot serve (connection exceptions, out of resources, shutting
# down, statement timeout): the same cases PsycopgTransport reports as down.
_UNAVAILABLE_STATES = ("PGRST000", "PGRST001", "PGRST002", "PGRST003", "08", "53000", "53100", "53200",
                       "53300", "57P01", "57P02", "57P03", "57014")
# PostgREST's own codes for what Postgres itself would have said.
_SQLSTATE_FOR = {"PGRST202": "42883"}  # function not found -> undefined_function


class SupabaseRpcTransport:
    """The `supabase` client's RPC (POST /rest/v1/rpc/<fn>) with the service role key."""

    def __init__(self, url: str, service_role_key: str, timeout: float = 10.0):
        _check_supabase(url, service_role_key)
        self.url = url
        self.key = service_role_key
        self.timeout = timeout
        self._client: Any = None
        self._http: Any = None
        self._lock = threading.Lock()
        self._status = threading.local()

    def _rpc(self) -> Any:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    import httpx
                    from supabase import ClientOptions, create_client

                    # Our own HTTP client: one keep-alive pool for the container,
                    # and a hook that records the status of the last response,
                    # which postgrest-py's APIError does not carry.
                    self._http = httpx.Client(
                        timeout=self.timeout,
                        event_hooks={"response": [self._record_status]},
                    )
                    self._client = create_client(self.url, self.key, options=ClientOptions(httpx_client=self._http))
        return self._client

    def _record_status(self, response: Any) -> None:
        self._status.last = response.status_code

    def call(self, function: str, **args: Any) -> Any:
        _check_names(function, args)
        import httpx
        from postgrest.exceptions import APIError

        self._status.last = None
        try:
            return self._rpc().rpc(function, args).execute().data
        except httpx.TransportError as e:  # refused, reset, timed out
            log.warning("PostgREST unreachable: %s", type(e).__name__)
            raise DatabaseUnavailable(type(e).__name__) from None
        except APIError as e:
            status = getattr(self._status, "last", None) or 0
            code = str(e.code) if e.code else None
            # A 502/503/504 (or a CDN's 52x) is the API gateway or PostgREST
            # failing to reach the database, whatever the body says.
            if status in (502, 503, 504) or status >= 520 or (code or "").startswith(_UNAVAILABLE_STATES):
                log.warning("PostgREST reports the database unavailable: %s %s", status, code)
                raise DatabaseUnavailable(code or str(status)) from None
            raise DatabaseError(_SQLSTATE_FOR.get(code or "", code), e.message or f"HTTP {status}") from None

    def close(self) -> None:
        http, self._http, self._client = self._http, None, None
        if http is not None:
            http.close()


_db: Database | None = None
_db_lock = threading.Lock()


def get_database() -> Database:
    """The container's database port, chosen by configuration and reused."""
    global _db
    if _db is None:
        with _db_lock:
            if _db is None:
                from shared.config import get_settings

                s = get_settings().require("database")
                if s.DATABASE_URL:
                    _db = PsycopgTransport(s.DATABASE_URL.get_secret_value())
                else:
                    assert s.SUPABASE_URL and s.SUPABASE_SERVICE_ROLE_KEY
                    _db = SupabaseRpcTransport(s.SUPABASE_URL, s.SUPABASE_SERVICE_ROLE_KEY.get_secret_value())
    return _db


def set_database(db: Database | None) -> None:
    """Swap the port (tests point functions at their own database)."""
    global _db
    if _db is not None and _db is not db:
        _db.close()
    _db = db


def _secrets_rotated(old: Any, new: Any) -> None:
    # A re-read DATABASE_URL or service role key (shared/config.py) needs new connections.
    if (old.DATABASE_URL, old.SUPABASE_SERVICE_ROLE_KEY) != (new.DATABASE_URL, new.SUPABASE_SERVICE_ROLE_KEY):
        set_database(None)


def _register() -> None:
    from shared.config import on_rotation

    on_rotation(_secrets_rotated)


_register()


def call(function: str, **args: Any) -> Any:
    """Call a SQL function; an unreachable database becomes 503 UNAVAILABLE.

    Dicts and lists are sent as jsonb. A refusal by the database raises
    DatabaseError with its SQLSTATE.
    """
    try:
        try:
            return get_database().call(function, **args)
        except DatabaseError as e:
            if e.sqlstate != _FOREIGN_KEY_VIOLATION:
                raise
            # A row the call refers to (most often the caller's profile) was deleted by a
            # transaction that committed while this one waited on its lock. The call is one
            # statement, so nothing of it was written; once more, it sees the deletion and
            # answers as for it (no profile, no such request) instead of a 500.
            return get_database().call(function, **args)
    except DatabaseUnavailable:
        raise unavailable("The database is unavailable; retry shortly.") from None


_FOREIGN_KEY_VIOLATION = "23503"


__all__ = ["ApiError", "Database", "DatabaseError", "DatabaseUnavailable", "call", "get_database", "set_database"]
