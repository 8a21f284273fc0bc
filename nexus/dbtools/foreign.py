"""Foreign objects: what an adopted database holds that is not ours.

When the chain adopts the predecessor's database (see
supabase/migrations/20251208000000_adopt_predecessor_set_aside.sql), it
leaves their other tables, their functions and types, and their columns on
the tables we took over in place, and records each in
`nexus_adopt.foreign_objects`. `verify` and `lint` list those apart: they are
not part of our contract and never fail it, but what stays open about them
to an API role is shown as a warning: to anon, to members (role
authenticated) and to guests (anonymous sign-ins, authenticated too): tables
without row level security, policies letting everyone write, no restrictive
policy refusing guests, SECURITY DEFINER functions they can run. The adoption
closes their tables to anon and guests, so on an adopted database what is
left is what members keep. An object nobody recorded is still drift.
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


_GUESTS_REFUSED = r"is_anonymous"
# A policy that lets every member through: no condition, or only the
# predecessor's test of the API role (which a guest's session passes too).
_OPEN_QUAL = r"^\(*(true|auth\.role\(\) = 'authenticated'::text)\)*$"


def warnings(conn, registry: Registry) -> list[Warning_]:
    """What stays open about the foreign objects to each API role: anon, members
    (authenticated) and guests (anonymous sign-ins: authenticated too)."""
    if not registry:
        return []
    tables = sorted(registry.tables)
    functions = sorted(name for kind, name in registry.objects if kind == "function")
    out: list[Warning_] = []
    rows = conn.execute(
        """SELECT t, c.relkind::text, c.relrowsecurity, r.rolname,
                  has_table_privilege(r.rolname, c.oid, 'SELECT'),
                  has_table_privilege(r.rolname, c.oid, 'INSERT') OR has_table_privilege(r.rolname, c.oid, 'UPDATE')
                    OR has_table_privilege(r.rolname, c.oid, 'DELETE'),
                  (SELECT string_agg(p.polname, ', ' ORDER BY p.polname) FROM pg_policy p
                    WHERE p.polrelid = c.oid AND p.polpermissive AND p.polcmd IN ('a', 'w', 'd', '*')
                      AND (p.polroles @> ARRAY[0::oid] OR p.polroles @> ARRAY[r.oid])
                      AND (p.polqual IS NULL OR pg_get_expr(p.polqual, p.polrelid) ~* %(open)s)
                      AND (p.polwithcheck IS NULL OR pg_get_expr(p.polwithcheck, p.polrelid) ~* %(open)s)),
                  EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid AND p.polpermissive
                            AND (p.polroles @> ARRAY[0::oid] OR p.polroles @> ARRAY[r.oid])),
                  EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid AND NOT p.polpermissive
                            AND p.polcmd = '*' AND (p.polroles @> ARRAY[0::oid] OR p.polroles @> ARRAY[r.oid])
                            AND pg_get_expr(p.polqual, p.polrelid) ~ %(guests)s
                            AND pg_get_expr(p.polwithcheck, p.polrelid) ~ %(guests)s)
           FROM unnest(%(tables)s::text[]) t JOIN pg_class c ON c.oid = to_regclass(t)
           CROSS JOIN pg_roles r WHERE r.rolname IN ('anon', 'authenticated')
           ORDER BY t, r.rolname DESC""",
        {"tables": tables, "open": _OPEN_QUAL, "guests": _GUESTS_REFUSED}).fetchall()
    for name, kind, rls, role, read, write, open_write, any_policy, guests_refused in rows:
        if not read and not write:
            continue
        who = "anon" if role == "anon" else "members and guests (authenticated)"
        rls_applies = rls and kind in ("r", "p")
        if not rls_applies:
            what = "read and write" if write else "read"
            why = "row level security is off" if kind in ("r", "p") else "a view without row level security"
            out.append(Warning_(name, f"{why}: {who} can {what} every row through the API"))
            continue
        if open_write and write:
            out.append(Warning_(name, f"policies {open_write} let {'anon' if role == 'anon' else 'members'} "
                                      "write every row"))
        if role == "authenticated" and any_policy and not guests_refused:
            out.append(Warning_(name, "guests (anonymous sign-ins, role authenticated) pass its policies as "
                                      "members do: no restrictive policy refuses them"))
    for name, definer, anon, authenticated in conn.execute(
        """SELECT f, p.prosecdef, has_function_privilege('anon', p.oid, 'EXECUTE'),
                  has_function_privilege('authenticated', p.oid, 'EXECUTE')
           FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
           CROSS JOIN LATERAL format('%%I.%%I(%%s)', n.nspname, p.proname,
                                     pg_get_function_identity_arguments(p.oid)) f
           WHERE f = ANY(%s::text[]) ORDER BY f""", (functions,)).fetchall():
        if definer and anon:
            out.append(Warning_(name, "SECURITY DEFINER function anon can execute (it runs with its owner's rights)"))
        elif definer and authenticated:
            out.append(Warning_(name, "SECURITY DEFINER function members and guests can execute "
                                      "(it runs with its owner's rights)"))
    return out
