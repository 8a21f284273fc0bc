"""A loopback Supabase Data API (gateway + PostgREST) for RPC calls, over the test database.

Implements the documented contract (docs.postgrest.org: "Functions as RPC",
"Transactions", "Errors"; Supabase's gateway in front of it) as far as
`supabase-py`'s `client.rpc(fn, params).execute()` uses it:

- gateway: `apikey` header (or `?apikey=`) must be one of the project's API
  keys, else 401 `{"message": ...}` without a code, as Supabase's gateway answers;
- `POST /rest/v1/rpc/<fn>` with a JSON object of named arguments (`GET` with
  query parameters for read-only calls); other verbs -> 405 PGRST101;
- schema from `Content-Profile` (POST) / `Accept-Profile` (GET), default
  `public`; a schema that is not exposed -> 406 PGRST106;
- `Authorization: Bearer <jwt>` verified with the project's JWT secret (HS256,
  `exp`) -> 401 PGRST301 if invalid; no token -> the anon role;
- each call is one transaction as PostgREST runs it: READ ONLY unless POST on a
  VOLATILE function, `SET LOCAL ROLE <role claim>`, `request.jwt.claims`,
  `request.method`, `request.path`, `request.headers` and `search_path` set
  locally, arguments cast by `json_to_record` to the function's parameter types;
- the function is found by name and argument names (all parameters without
  defaults present, no unknown keys) -> 404 PGRST202 otherwise;
- success: 200 with the function's JSON value (`SETOF` as an array, void 204);
- database errors: `{code, message, details, hint}` with PostgREST's SQLSTATE to
  HTTP status table; database unreachable -> 503 PGRST000.

Fault switches: `peer.down = "gateway"` (a 502 from the gateway with a
non-PostgREST body) or `"schema-cache"` (503 PGRST002); `None` restores.
Every request is recorded in `peer.calls` for contract assertions.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import jwt
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tests.peers.loopback import LoopbackServer, QuietHandler

EXPOSED_SCHEMAS = ("public", "graphql_public")  # Supabase's default `db-schemas`
PREFIX = "/rest/v1"


def api_key(secret: str, role: str, *, ttl: int = 10 * 365 * 86400) -> str:
    """A Supabase-style API key: a long-lived JWT for `anon` or `service_role`."""
    now = int(time.time())
    return jwt.encode({"iss": "supabase", "ref": "localtest", "role": role, "iat": now, "exp": now + ttl},
                      secret, algorithm="HS256")


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int


class _Reply(Exception):
    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None):
        self.status, self.body, self.headers = status, body, headers or {}


def _pgrst(status: int, code: str, message: str, details: Any = None, hint: Any = None) -> _Reply:
    return _Reply(status, {"code": code, "details": details, "hint": hint, "message": message})


def status_for_sqlstate(state: str, role: str) -> int:
    """PostgREST's documented SQLSTATE -> HTTP status table."""
    exact = {"23503": 409, "23505": 409, "25006": 405, "53400": 500, "P0001": 400, "42883": 404,
             "42P01": 404, "42P17": 500}
    if state in exact:
        return exact[state]
    if state == "42501":
        return 401 if role == "anon" else 403
    if state.startswith("PT") and state[2:].isdigit():
        return int(state[2:])
    prefixes = {"08": 503, "09": 500, "0L": 403, "0P": 403, "25": 500, "28": 403, "2D": 500, "38": 500,
                "39": 500, "3B": 500, "40": 500, "53": 503, "54": 500, "55": 500, "57": 500, "58": 500,
                "F0": 500, "HV": 500, "P0": 500, "XX": 500}
    return prefixes.get(state[:2], 400)


class _Handler(QuietHandler):
    peer: "PostgrestPeer"

    def do_POST(self) -> None:
        self._handle("POST")

    def do_GET(self) -> None:
        self._handle("GET")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def _handle(self, method: str) -> None:
        body = self.read_body()
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            status, payload, extra = self.peer.serve(method, self.path, headers, body)
        except _Reply as r:
            status, payload, extra = r.status, r.body, r.headers
        self.peer.calls.append(Call(method, self.path, headers, body, status))
        if status == 204:
            self.send_response(204)
            self.send_header("content-length", "0")
            self.end_headers()
            return
        raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.reply(status, raw, "application/json; charset=utf-8", extra)


class PostgrestPeer(LoopbackServer):
    handler_class = _Handler

    def __init__(self, database_url: str, jwt_secret: str, *, api_keys: tuple[str, ...] = (),
                 lifetime: float = 120.0):
        super().__init__(lifetime=lifetime)
        # PostgREST connects as `authenticator` and switches role per request.
        params = conninfo_to_dict(database_url)
        params["user"] = "authenticator"
        params.pop("password", None)
        self.conninfo = make_conninfo(**params)
        self.jwt_secret = jwt_secret
        self.api_keys = set(api_keys)
        self.calls: list[Call] = []
        self.down: str | None = None
        self._pool: queue.LifoQueue = queue.LifoQueue()
        self._all: list[Any] = []
        self._lock = threading.Lock()

    # -- HTTP -------------------------------------------------------------------------------

    def serve(self, method: str, target: str, headers: dict[str, str], body: bytes) -> tuple[int, Any, dict]:
        url = urlsplit(target)
        query = dict(parse_qsl(url.query))
        key = headers.get("apikey") or query.pop("apikey", None)
        if not key:
            raise _Reply(401, {"message": "No API key found in request"})
        if key not in self.api_keys:
            raise _Reply(401, {"message": "Invalid API key"})
        if self.down == "gateway":
            raise _Reply(502, {"message": "An invalid response was received from the upstream server"})
        if not url.path.startswith(PREFIX + "/rpc/"):
            raise _pgrst(404, "PGRST205", f"Could not find the table '{url.path}' in the schema cache")
        if self.down == "schema-cache":
            raise _pgrst(503, "PGRST002", "Could not query the database for the schema cache. Retrying.")
        function = url.path[len(PREFIX + "/rpc/"):]
        if method not in ("GET", "POST"):
            raise _pgrst(405, "PGRST101", "Only GET and POST verbs are allowed for functions")

        profile = headers.get("content-profile" if method == "POST" else "accept-profile", "public")
        if profile not in EXPOSED_SCHEMAS:
            raise _pgrst(406, "PGRST106", f"Invalid schema: {profile}",
                         hint=f"Only the following schemas are exposed: {', '.join(EXPOSED_SCHEMAS)}")
        claims = self._claims(headers.get("authorization"))

        if method == "POST":
            ctype = headers.get("content-type", "application/json").split(";")[0].strip().lower()
            if ctype != "application/json":
                raise _pgrst(415, "PGRST107", f"The Content-Type \"{ctype}\" is not supported")
            try:
                args = json.loads(body) if body.strip() else {}
            except ValueError as e:
                raise _pgrst(400, "PGRST102", "Empty or invalid json", details=str(e)) from None
            if not isinstance(args, dict):
                raise _pgrst(400, "PGRST102", "Named arguments must be given as a JSON object")
        else:
            args = query
        return self._call(method, profile, function, args, claims, headers, url.path)

    def _claims(self, authorization: str | None) -> dict[str, Any]:
        if not authorization:
            return {"role": "anon"}
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _pgrst(401, "PGRST301", "Expected Authorization: Bearer <token>")
        try:
            claims = jwt.decode(token.strip(), self.jwt_secret, algorithms=["HS256"],
                                options={"verify_aud": False, "require": ["exp"]})
        except jwt.ExpiredSignatureError:
            raise _pgrst(401, "PGRST303", "JWT expired") from None
        except jwt.PyJWTError as e:
            raise _pgrst(401, "PGRST301", str(e)) from None
        claims.setdefault("role", "anon")
        return claims

    # -- database ---------------------------------------------------------------------------

    def _call(self, method: str, schema: str, function: str, args: dict[str, Any], claims: dict[str, Any],
              headers: dict[str, str], path: str) -> tuple[int, Any, dict]:
        try:
            conn = self._pool.get_nowait()
        except queue.Empty:
            try:
                conn = psycopg.connect(self.conninfo, autocommit=True, connect_timeout=3)
            except psycopg.OperationalError as e:
                raise _pgrst(503, "PGRST000", "Could not connect with the database due to an incorrect "
                             "db-uri or due to the PostgreSQL service not running.",
                             details=str(e).strip().splitlines()[0] if str(e).strip() else None) from None
            with self._lock:
                self._all.append(conn)
        try:
            result = self._transaction(conn, method, schema, function, args, claims, headers, path)
        except psycopg.Error as e:
            if conn.broken or conn.closed:
                raise _pgrst(503, "PGRST001", "Database client error. Retrying the connection.") from None
            self._pool.put(conn)
            role = claims.get("role", "anon")
            state = e.sqlstate or "XX000"
            raise _pgrst(status_for_sqlstate(state, role), state, e.diag.message_primary or str(e),
                         details=e.diag.message_detail, hint=e.diag.message_hint) from None
        except _Reply:
            self._pool.put(conn)
            raise
        self._pool.put(conn)
        return result

    def _transaction(self, conn: Any, method: str, schema: str, function: str, args: dict[str, Any],
                     claims: dict[str, Any], headers: dict[str, str], path: str) -> tuple[int, Any, dict]:
        with conn.transaction():
            proc = self._find(conn, schema, function, set(args))
            read_only = method == "GET" or proc["volatility"] != "v"
            if read_only:  # READ WRITE is the default
                conn.execute("SET TRANSACTION READ ONLY")
            conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(str(claims.get("role", "anon")))))
            conn.execute(
                "SELECT set_config('search_path', %s, true), set_config('request.jwt.claims', %s, true),"
                " set_config('request.method', %s, true), set_config('request.path', %s, true),"
                " set_config('request.headers', %s, true)",
                (f'"{schema}", "extensions"', json.dumps(claims), method, path,
                 json.dumps({k: v for k, v in headers.items() if k != "authorization"})),
            )
            names = [n for n in proc["names"] if n in args]
            fn = sql.Identifier(schema, function)
            call = sql.SQL("{}({})").format(fn, sql.SQL(", ").join(
                sql.SQL("{} := _.{}").format(sql.Identifier(n), sql.Identifier(n)) for n in names))
            source = sql.SQL("")
            if names:
                source = sql.SQL(" FROM json_to_record(%(args)s::json) AS _({})").format(sql.SQL(", ").join(
                    sql.SQL("{} {}").format(sql.Identifier(n), sql.SQL(proc["types"][n])) for n in names))
            if proc["returns_set"]:
                query = sql.SQL("SELECT coalesce(json_agg(s.r), '[]')::text FROM (SELECT {} AS r{}) s").format(
                    call, source)
            else:
                query = sql.SQL("SELECT to_json({})::text{}").format(call, source)
            row = conn.execute(query, {"args": json.dumps(args)}).fetchone()
        if proc["void"]:
            return 204, b"", {}
        return 200, (row[0] if row and row[0] is not None else "null").encode(), {}

    def _find(self, conn: Any, schema: str, function: str, keys: set[str]) -> dict[str, Any]:
        rows = conn.execute(
            """
            SELECT p.proargnames, p.proargmodes, p.pronargs, p.pronargdefaults, p.proretset,
                   p.provolatile, p.prorettype = 'void'::regtype,
                   array(SELECT format_type(t, NULL) FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY u(t, i)
                         ORDER BY i)
            FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
            WHERE n.nspname = %s AND p.proname = %s AND p.prokind = 'f'
            """,
            (schema, function),
        ).fetchall()
        for argnames, argmodes, nargs, ndefaults, retset, volatility, void, types in rows:
            modes = argmodes or ["i"] * len(argnames or [])
            names = [n for n, m in zip(argnames or [], modes) if m in ("i", "b", "v")][:nargs]
            if len(names) != nargs or any(not n for n in names):
                continue  # unnamed parameters cannot be called with named arguments
            required = set(names[: nargs - ndefaults])
            if keys <= set(names) and required <= keys:
                return {"names": names, "types": dict(zip(names, types)), "returns_set": retset,
                        "volatility": volatility, "void": void}
        listed = ", ".join(sorted(keys))
        raise _pgrst(404, "PGRST202", f"Could not find the function {schema}.{function}({listed}) in the schema cache",
                     details=f"Searched for the function {schema}.{function} with parameters {listed} or with a "
                             "single unnamed json/jsonb parameter, but no matches were found in the schema cache.",
                     hint=None)

    def stop(self) -> None:
        super().stop()
        with self._lock:
            conns, self._all = self._all, []
        for c in conns:
            try:
                c.close()
            except Exception:
                pass
