"""`nexus db smoke`: exercise a live database's contract without changing it.

Everything runs inside one transaction that is always rolled back, each
probe in its own savepoint so one failure does not hide the rest:

- service_role reads each table and passes the privilege checks of insert,
  update and delete (zero-row statements: privileges are checked at
  executor start, so no row needs to exist or be invented);
- anon is stopped on each table: a read sees no rows, update and delete
  touch none, and an insert is refused by a privilege or by row-level
  security (RLS is checked before constraints, so any other error means
  RLS let the row through);
- each of our SQL functions resolves and, in `public` (the API), service_role
  may execute it; the stable and immutable ones (and, with call_volatile, all of them) are
  called with dummy arguments. An error raised by the function's own logic
  counts as a pass; a missing object or privilege does not.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from nexus.dbtools.catalog import OUR_SCHEMAS


@dataclass(frozen=True)
class Probe:
    ok: bool
    object: str
    detail: str

    def __str__(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'}  {self.object}: {self.detail}"


# Errors that mean "the contract is broken", not "the dummy input was rejected".
_BROKEN_CLASSES = ("42", "3F", "XX", "58", "08", "53", "57")

_DUMMY = {
    "uuid": "gen_random_uuid()", "text": "'nexus-smoke'", "character varying": "'nexus-smoke'",
    "name": "'nexus_smoke'", "citext": "'nexus-smoke'", "smallint": "0", "integer": "0", "bigint": "0",
    "numeric": "0", "real": "0", "double precision": "0", "boolean": "false", "jsonb": "'{}'",
    "json": "'{}'", "timestamp with time zone": "now()", "timestamp without time zone": "now()",
    "date": "current_date", "interval": "'1 minute'", "inet": "'127.0.0.1'",
}


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class _Session:
    def __init__(self, conn):
        self.conn = conn

    def attempt(self, sql: str, role: str | None = None):
        """(rows or rowcount, None) on success; (None, error) after rolling back to a savepoint.

        The role switch lives inside the savepoint, so an error undoes it too.
        """
        import psycopg

        try:
            with self.conn.transaction():
                if role:
                    self.conn.execute(f"SET LOCAL ROLE {_q(role)}")
                    self.conn.execute("SELECT set_config('request.jwt.claims', %s, true)",
                                      (json.dumps({"role": role}),))
                cur = self.conn.execute(sql)
                result = cur.fetchall() if cur.description else cur.rowcount
                self.conn.execute("RESET ROLE")
                return result, None
        except psycopg.Error as e:
            return None, e


def _sqlstate(e) -> str:
    return getattr(e, "sqlstate", None) or "?????"


def _tables(conn, schemas):
    """(schema, table, relkind, insertable columns, column to update as service_role, as anon, append-only)."""
    return conn.execute("""
        SELECT n.nspname, c.relname, c.relkind::text,
               array(SELECT a.attname FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0
                     AND NOT a.attisdropped AND a.attgenerated = '' ORDER BY a.attnum),
               (SELECT a.attname FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0
                  AND NOT a.attisdropped AND a.attgenerated = '' AND a.attidentity <> 'a'
                ORDER BY has_column_privilege('service_role', c.oid, a.attnum, 'UPDATE') DESC, a.attnum LIMIT 1),
               (SELECT a.attname FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0
                  AND NOT a.attisdropped AND a.attgenerated = '' AND a.attidentity <> 'a'
                ORDER BY has_column_privilege('anon', c.oid, a.attnum, 'UPDATE') DESC, a.attnum LIMIT 1),
               coalesce(obj_description(c.oid, 'pg_class'), '') LIKE 'Append-only%%'
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = ANY(%s) AND c.relkind IN ('r', 'p', 'v', 'm')
          AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype = 'e')
        ORDER BY 1, 2""", (list(schemas),)).fetchall()


def _table_probes(s: _Session, schema: str, table: str, kind: str, columns: list[str],
                  sr_column: str | None, anon_column: str | None, append_only: bool = False) -> list[Probe]:
    name = f"{schema}.{table}"
    rel = f"{_q(schema)}.{_q(table)}"
    out: list[Probe] = []
    writable = kind in ("r", "p")
    rows, _ = s.attempt(f"SELECT count(*) FROM {rel}")
    total = rows[0][0] if rows else "?"

    # service_role: a read and the privilege checks of each write.
    statements = {"select": f"SELECT count(*) FROM {rel}"}
    if writable and columns:
        cols = ", ".join(_q(c) for c in columns)
        statements["insert"] = f"INSERT INTO {rel} ({cols}) OVERRIDING SYSTEM VALUE SELECT {cols} FROM {rel} WHERE false"
        if sr_column:
            statements["update"] = f"UPDATE {rel} SET {_q(sr_column)} = {_q(sr_column)} WHERE false"
        statements["delete"] = f"DELETE FROM {rel} WHERE false"
    failed = []
    for op, sql in statements.items():
        _, err = s.attempt(sql, "service_role")
        # an append-only table (its comment says so) is written only by our SECURITY DEFINER
        # functions: it must refuse the service role's insert, update and delete
        if append_only and op in ("insert", "update", "delete"):
            if _sqlstate(err) != "42501":
                failed.append(f"{op} (allowed on an append-only table)")
        elif err is not None:
            failed.append(f"{op} ({_sqlstate(err)}: {str(err).splitlines()[0]})")
    out.append(Probe(not failed, name, "service_role " + ("could not " + "; ".join(failed) if failed
                                                        else "round trip: " + "/".join(statements))))

    # anon: sees nothing, changes nothing.
    verdicts, exposed = [], []
    rows, err = s.attempt(f"SELECT count(*) FROM {rel}", "anon")
    if err is None:
        if rows[0][0]:
            exposed.append(f"anon reads {rows[0][0]} of {total} rows")
        else:
            verdicts.append(f"select sees 0 of {total} rows")
    elif _sqlstate(err) == "42501":
        verdicts.append("select denied")
    else:
        exposed.append(f"select raised {_sqlstate(err)}: {str(err).splitlines()[0]}")
    if writable and columns:
        writes = [("delete", f"DELETE FROM {rel}")]
        if anon_column:
            writes.insert(0, ("update", f"UPDATE {rel} SET {_q(anon_column)} = {_q(anon_column)}"))
        for op, sql in writes:
            count, err = s.attempt(sql, "anon")
            if err is None and count:
                exposed.append(f"anon {op}s {count} rows")
            elif err is not None and _sqlstate(err) != "42501":
                exposed.append(f"{op} raised {_sqlstate(err)}: {str(err).splitlines()[0]}")
            else:
                verdicts.append(f"{op} " + ("denied" if err is not None else "touches 0 rows"))
        _, err = s.attempt(f"INSERT INTO {rel} DEFAULT VALUES", "anon")
        if err is not None and _sqlstate(err) == "42501":
            verdicts.append("insert denied")
        else:
            why = "succeeded" if err is None else f"was stopped only by {_sqlstate(err)}: {str(err).splitlines()[0]}"
            exposed.append(f"anon insert passed row-level security ({why})")
    out.append(Probe(not exposed, name, "anon " + ("EXPOSED: " + "; ".join(exposed) if exposed
                                                  else "blocked: " + ", ".join(verdicts))))
    return out


def _functions(conn, schemas):
    return conn.execute("""
        SELECT n.nspname, format('%%I.%%I(%%s)', n.nspname, p.proname, pg_get_function_identity_arguments(p.oid)),
               format('%%I.%%I', n.nspname, p.proname), p.prokind::text, p.provolatile::text, p.provariadic <> 0,
               array(SELECT format_type(t, NULL) FROM unnest(p.proargtypes::oid[]) t),
               format_type(p.prorettype, NULL), has_function_privilege('service_role', p.oid, 'EXECUTE')
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = ANY(%s)
          AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')
        ORDER BY 2""", (list(schemas),)).fetchall()


def _function_probe(s: _Session, row, call_volatile: bool) -> Probe:
    schema, signature, qualified, kind, volatility, variadic, argtypes, returns, executable = row
    # Only `public` is the API; helpers elsewhere run inside our SECURITY
    # DEFINER functions, so they are probed as the owner, not service_role.
    api = schema == "public"
    role = "service_role" if api else None
    who = "service_role" if api else "the owner (internal helper)"
    if returns in ("trigger", "event_trigger"):
        return Probe(True, signature, "trigger function (runs through its triggers)")
    if kind != "f":
        return Probe(True, signature, "procedure or aggregate: resolvable, not called")
    if api and not executable:
        return Probe(False, signature, "service_role may not execute it")
    if volatility == "v" and not call_volatile:
        return Probe(True, signature, f"executable by {who} (volatile: not called; use --call-volatile)")
    if any(t.startswith("any") for t in argtypes):
        return Probe(True, signature, f"executable by {who} (polymorphic: not called)")
    args = [f"{_DUMMY.get(t, 'NULL') if not t.endswith('[]') else repr('{}')}::{t}" for t in argtypes]
    if variadic and args:
        args[-1] = "VARIADIC " + args[-1]
    _, err = s.attempt(f"SELECT * FROM {qualified}({', '.join(args)}) LIMIT 1", role)
    if err is None:
        return Probe(True, signature, f"called by {who} with dummy arguments")
    state = _sqlstate(err)
    if state.startswith(_BROKEN_CLASSES):
        return Probe(False, signature, f"call failed: {state}: {str(err).splitlines()[0]}")
    return Probe(True, signature, f"called; rejected the dummy arguments ({state})")


def run(conn, schemas: tuple[str, ...] = OUR_SCHEMAS, *, call_volatile: bool = False) -> list[Probe]:
    """All probes; `conn` must not be in autocommit mode. Nothing is kept."""
    s = _Session(conn)
    probes: list[Probe] = []
    with conn.transaction(force_rollback=True):
        conn.execute("SET LOCAL statement_timeout = '10s'")
        conn.execute("SET LOCAL lock_timeout = '2s'")
        for row in _tables(conn, schemas):
            probes += _table_probes(s, *row)
        for row in _functions(conn, schemas):
            probes.append(_function_probe(s, row, call_volatile))
    return probes
