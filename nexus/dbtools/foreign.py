"""Foreign objects: what an adopted database holds that is not ours.

When the chain adopts the predecessor's database (see
supabase/migrations/20251208000000_adopt_predecessor_set_aside.sql), it
leaves their other tables, their functions and types, and their columns on
the tables we took over in place, and records each in
`nexus_adopt.foreign_objects`. `verify` and `lint` list those apart: they are
not part of our contract and never fail it, but what is unsafe about them
(tables anon can write, SECURITY DEFINER functions anon can run) is shown as
a warning. An object nobody recorded is still drift.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

from nexus.dbtools.catalog import Snapshot
from nexus.dbtools.diff import Difference

_PART = re.compile(r'"(?:[^"]|"")*"|[^.]+')

# Kinds whose name starts with the table they belong to.
_ON_TABLE = ("column", "constraint", "policy", "trigger", "privilege", "column privilege", "realtime publication")


@dataclass(frozen=True)
class Registry:
    objects: frozenset[tuple[str, str]]

    @property
    def tables(self) -> set[str]:
        return {name for kind, name in self.objects if kind == "table"}

    def __bool__(self) -> bool:
        return bool(self.objects)

    def owns(self, kind: str, name: str, attrs: dict | None = None) -> bool:
        """True when (kind, name) is foreign: recorded, or on a recorded table."""
        if (kind, name) in self.objects:
            return True
        if kind == "index":
            return bool(attrs) and attrs.get("table") in self.tables
        if kind in _ON_TABLE:
            parts = _PART.findall(name)
            return ".".join(parts[:2]) in self.tables
        return False


@dataclass(frozen=True)
class Warning_:
    object: str
    detail: str

    def __str__(self) -> str:
        return f"WARN   foreign  {self.object}: {self.detail}"


def load(conn) -> Registry:
    """The recorded foreign objects (none when the database was never adopted)."""
    if conn.execute("SELECT to_regclass('nexus_adopt.foreign_objects') IS NULL").fetchone()[0]:
        return Registry(frozenset())
    rows = conn.execute("SELECT kind, name FROM nexus_adopt.foreign_objects").fetchall()
    return Registry(frozenset((k, n) for k, n in rows))


def split(differences: Iterable[Difference], live: Snapshot,
          registry: Registry) -> tuple[list[Difference], list[Difference]]:
    """(ours, foreign): extras that are recorded foreign objects go apart."""
    ours, theirs = [], []
    for d in differences:
        attrs = live.get(d.kind, {}).get(d.name)
        if d.change == "extra" and registry.owns(d.kind, d.name, attrs):
            theirs.append(d)
        else:
            ours.append(d)
    return ours, theirs


def warnings(conn, registry: Registry) -> list[Warning_]:
    """What is unsafe about the foreign objects, for the API roles."""
    if not registry:
        return []
    tables = sorted(registry.tables)
    functions = sorted(name for kind, name in registry.objects if kind == "function")
    out: list[Warning_] = []
    for name, rls, anon_write, anon_read, open_policies in conn.execute(
        """SELECT t, c.relrowsecurity,
                  has_table_privilege('anon', c.oid, 'INSERT') OR has_table_privilege('anon', c.oid, 'UPDATE')
                    OR has_table_privilege('anon', c.oid, 'DELETE'),
                  has_table_privilege('anon', c.oid, 'SELECT'),
                  (SELECT string_agg(p.polname, ', ' ORDER BY p.polname) FROM pg_policy p
                    WHERE p.polrelid = c.oid AND p.polpermissive AND p.polcmd IN ('a', 'w', 'd', '*')
                      AND (p.polroles @> ARRAY[0::oid]
                           OR p.polroles @> ARRAY[(SELECT oid FROM pg_roles WHERE rolname = 'anon')])
                      AND (p.polqual IS NULL OR pg_get_expr(p.polqual, p.polrelid) ~* '^\\(?true\\)?$')
                      AND (p.polwithcheck IS NULL OR pg_get_expr(p.polwithcheck, p.polrelid) ~* '^\\(?true\\)?$'))
           FROM unnest(%s::text[]) t JOIN pg_class c ON c.oid = to_regclass(t)""", (tables,)).fetchall():
        if not rls and anon_write:
            out.append(Warning_(name, "row level security is off: anon can read and write every row through the API"))
        elif not rls and anon_read:
            out.append(Warning_(name, "row level security is off: anon can read every row through the API"))
        elif open_policies and anon_write:
            out.append(Warning_(name, f"policies {open_policies} let anon write every row"))
    for name, definer, anon in conn.execute(
        """SELECT f, p.prosecdef, has_function_privilege('anon', p.oid, 'EXECUTE')
           FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
           CROSS JOIN LATERAL format('%%I.%%I(%%s)', n.nspname, p.proname,
                                     pg_get_function_identity_arguments(p.oid)) f
           WHERE f = ANY(%s::text[]) ORDER BY f""", (functions,)).fetchall():
        if definer and anon:
            out.append(Warning_(name, "SECURITY DEFINER function anon can execute (it runs with its owner's rights)"))
    return out
