"""The database port: call one SQL function by name, get its JSON result.

Every state change is one SQL function in the migrations, taking named
arguments and returning jsonb, so both transports have identical semantics:

- PsycopgTransport: psycopg 3 straight to Postgres (production: Supavisor's
  transaction pooler on port 6543, hence no prepared statements). One
  connection per thread, opened lazily and reused across invocations.
- SupabaseRpcTransport: the `supabase` client's RPC over PostgREST, for
  deployments that hold only the service role key. Imported only if used.

The functions are SECURITY DEFINER and executable only by service_role (and
their owner), so the caller's role does not change what they may do.
"""

from __future__ import annotations

import re
import threading
from typing import Any, Protocol

from shared.errors import ApiError, unavailable

_IDENT = re.compile(r"^[a-z_][a-z0-9_]*$")


class DatabaseUnavailable(Exception):
    """The database could not be reached; callers answer 503 so clients retry."""


class Database(Protocol):
    def call(self, function: str, **args: Any) -> Any: ...

    def close(self) -> None: ...


def _check_name(function: str) -> None:
    if not _IDENT.match(function):
        raise ValueError(f"not a function name: {function!r}")


class PsycopgTransport:
    def __init__(self, url: str, connect_timeout: int = 5):
        self.url = url
        self.connect_timeout = connect_timeout
        self._local = threading.local()
        self._all: list[Any] = []
        self._lock = threading.Lock()

    def _connection(self) -> Any:
        import psycopg

        conn = getattr(self._local, "conn", None)
        if conn is not None and not conn.closed:
            return conn
        try:
            conn = psycopg.connect(
                self.url,
                autocommit=True,
                prepare_threshold=None,  # Supavisor transaction mode
                connect_timeout=self.connect_timeout,
                application_name="nomadnexus-functions",
            )
        except psycopg.OperationalError as e:
            raise DatabaseUnavailable(type(e).__name__) from None
        self._local.conn = conn
        with self._lock:
            self._all.append(conn)
        return conn

    def call(self, function: str, **args: Any) -> Any:
        import psycopg
        from psycopg.types.json import Jsonb

        _check_name(function)
        params = {k: (Jsonb(v) if isinstance(v, (dict, list)) else v) for k, v in args.items()}
        named = ", ".join(f"{k} => %({k})s" for k in params)
        sql = f"SELECT public.{function}({named})"
        # One retry when a reused connection died between invocations (Lambda
        # freezes containers; the pooler may have closed the socket meanwhile).
        # A fresh connection that fails means the database is down.
        for attempt in (1, 2):
            reused = getattr(self._local, "conn", None) is not None
            conn = self._connection()
            try:
                row = conn.execute(sql, params).fetchone()
                return row[0] if row else None
            except (psycopg.OperationalError, psycopg.InterfaceError) as e:
                try:
                    conn.close()
                except Exception:
                    pass
                self._local.conn = None
                if attempt == 2 or not reused:
                    raise DatabaseUnavailable(type(e).__name__) from None
        raise AssertionError("unreachable")

    def close(self) -> None:
        with self._lock:
            conns, self._all = self._all, []
        for c in conns:
            try:
                c.close()
            except Exception:
                pass
        self._local = threading.local()


class SupabaseRpcTransport:
    def __init__(self, url: str, service_role_key: str, timeout: float = 10.0):
        self.url = url
        self.key = service_role_key
        self.timeout = timeout
        self._client: Any = None
        self._lock = threading.Lock()

    def _rpc(self) -> Any:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    from supabase import ClientOptions, create_client

                    self._client = create_client(
                        self.url, self.key, options=ClientOptions(postgrest_client_timeout=self.timeout)
                    )
        return self._client

    def call(self, function: str, **args: Any) -> Any:
        _check_name(function)
        import httpx
        from postgrest.exceptions import APIError

        try:
            return self._rpc().rpc(function, args).execute().data
        except httpx.TransportError as e:
            raise DatabaseUnavailable(type(e).__name__) from None
        except APIError as e:
            # PostgREST answers 503/504 (PGRST000-003) when it cannot reach Postgres.
            if str(getattr(e, "code", "")).startswith("PGRST00"):
                raise DatabaseUnavailable(str(e.code)) from None
            raise

    def close(self) -> None:
        self._client = None


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


def call(function: str, **args: Any) -> Any:
    """Call a SQL function; an unreachable database becomes 503 UNAVAILABLE."""
    try:
        return get_database().call(function, **args)
    except DatabaseUnavailable:
        raise unavailable("The database is unavailable; retry shortly.") from None


__all__ = ["ApiError", "Database", "DatabaseUnavailable", "call", "get_database", "set_database"]
