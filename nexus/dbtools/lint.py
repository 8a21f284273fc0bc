"""Schema advisors: the checks of Supabase's splinter, run on our schemas.

Each check is one catalog query named after the splinter lint it mirrors
(https://github.com/supabase/splinter, lints/00NN_*.sql), so a finding here
is the finding the Supabase dashboard's advisor would show once deployed.
Where splinter limits a check to `public`, we apply it to every schema we
own: `nexus_private` is not exposed today, and the house rules ask for RLS
and policies on every table regardless. One check is a house rule with no
splinter counterpart (`role_without_policy`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from nexus.dbtools.catalog import OUR_SCHEMAS


@dataclass(frozen=True)
class Finding:
    lint: str
    level: str  # ERROR | WARN
    object: str
    detail: str

    def __str__(self) -> str:
        return f"{self.level:5}  {self.lint}  {self.object}: {self.detail}"


_NOT_EXTENSION = "NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = {oid} AND d.deptype = 'e')"
_TABLES = "c.relkind IN ('r', 'p') AND n.nspname = ANY(%(schemas)s) AND " + _NOT_EXTENSION.format(oid="c.oid")
_FROM_TABLES = "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
_NAME = "format('%%I.%%I', n.nspname, c.relname)"

# (lint, level, query returning (object, detail)). Mirrors splinter's numbering.
_CHECKS: list[tuple[str, str, str]] = [
    ("0013_rls_disabled_in_public", "ERROR", f"""
        SELECT {_NAME}, 'row level security is disabled on this table'
        {_FROM_TABLES} WHERE {_TABLES} AND NOT c.relrowsecurity"""),
    ("0007_policy_exists_rls_disabled", "ERROR", f"""
        SELECT {_NAME}, 'has policies (' || string_agg(p.polname, ', ' ORDER BY p.polname)
                        || ') but row level security is disabled, so they do nothing'
        {_FROM_TABLES} JOIN pg_policy p ON p.polrelid = c.oid
        WHERE {_TABLES} AND NOT c.relrowsecurity GROUP BY n.nspname, c.relname"""),
    ("0008_rls_enabled_no_policy", "WARN", f"""
        SELECT {_NAME}, 'row level security is enabled but no policy exists'
        {_FROM_TABLES} WHERE {_TABLES} AND c.relrowsecurity
          AND NOT EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid)"""),
    ("0004_no_primary_key", "WARN", f"""
        SELECT {_NAME}, 'has no primary key'
        {_FROM_TABLES} WHERE {_TABLES}
          AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conrelid = c.oid AND k.contype = 'p')"""),
    # Splinter wants an index whose columns equal the key's; any valid index
    # whose leading columns are the key's columns serves the lookups a
    # cascade or join needs, so that is what we accept.
    ("0001_unindexed_foreign_keys", "WARN", f"""
        SELECT {_NAME}, format('foreign key %%I (%%s) has no index starting with its columns', k.conname,
                               (SELECT string_agg(a.attname, ', ' ORDER BY u.ord)
                                FROM unnest(k.conkey) WITH ORDINALITY u(attnum, ord)
                                JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = u.attnum))
        {_FROM_TABLES} JOIN pg_constraint k ON k.conrelid = c.oid AND k.contype = 'f'
        WHERE {_TABLES} AND NOT EXISTS (
            SELECT 1 FROM pg_index x
            WHERE x.indrelid = c.oid AND x.indisvalid
              -- a partial index on "col IS NOT NULL" still serves lookups by value
              AND (x.indpred IS NULL OR pg_get_expr(x.indpred, x.indrelid) ~ '^\\(*[a-z0-9_"]+ IS NOT NULL\\)*$')
              AND (SELECT array_agg(col ORDER BY col) FROM unnest(x.indkey::int2[]) WITH ORDINALITY u(col, ord)
                   WHERE ord <= cardinality(k.conkey))
                  = (SELECT array_agg(col ORDER BY col) FROM unnest(k.conkey) col))"""),
    ("0009_duplicate_index", "WARN", f"""
        SELECT {_NAME}, 'identical indexes ' || string_agg(i.relname, ', ' ORDER BY i.relname)
                        || '; drop all but one'
        {_FROM_TABLES} JOIN pg_index x ON x.indrelid = c.oid JOIN pg_class i ON i.oid = x.indexrelid
        WHERE {_TABLES}
        GROUP BY n.nspname, c.relname, x.indkey::text, x.indclass::text, x.indcollation::text,
                 x.indoption::text, coalesce(pg_get_expr(x.indexprs, x.indrelid), ''),
                 coalesce(pg_get_expr(x.indpred, x.indrelid), ''), i.relam
        HAVING count(*) > 1"""),
    ("0011_function_search_path_mutable", "WARN", """
        SELECT format('%%I.%%I(%%s)', n.nspname, p.proname, pg_get_function_identity_arguments(p.oid)),
               'does not pin search_path (add SET search_path = '''')'
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = ANY(%(schemas)s) AND """ + _NOT_EXTENSION.format(oid="p.oid") + """
          AND NOT EXISTS (SELECT 1 FROM unnest(coalesce(p.proconfig, '{}')) cfg WHERE cfg LIKE 'search_path=%%')"""),
    ("0028_anon_security_definer_function_executable", "WARN", """
        SELECT format('%%I.%%I(%%s)', n.nspname, p.proname, pg_get_function_identity_arguments(p.oid)),
               'SECURITY DEFINER function is executable by anon (revoke from PUBLIC, anon)'
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = ANY(%(schemas)s) AND p.prosecdef AND """ + _NOT_EXTENSION.format(oid="p.oid") + """
          AND has_function_privilege('anon', p.oid, 'EXECUTE')"""),
    ("0029_authenticated_security_definer_function_executable", "WARN", """
        SELECT format('%%I.%%I(%%s)', n.nspname, p.proname, pg_get_function_identity_arguments(p.oid)),
               'SECURITY DEFINER function is executable by authenticated (revoke from PUBLIC, authenticated)'
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = ANY(%(schemas)s) AND p.prosecdef AND """ + _NOT_EXTENSION.format(oid="p.oid") + """
          AND has_function_privilege('authenticated', p.oid, 'EXECUTE')"""),
    # SELECT ... USING (true) is a deliberate public read; writes that pass
    # every row are not.
    ("0024_rls_policy_always_true", "WARN", """
        WITH p AS (
            SELECT format('%%I.%%I', pp.schemaname, pp.tablename) AS tbl, pp.policyname, pp.cmd, pp.roles,
                   pp.qual, pp.with_check,
                   regexp_replace(lower(coalesce(pp.qual, '')), '\\s', '', 'g') AS q,
                   regexp_replace(lower(coalesce(pp.with_check, '')), '\\s', '', 'g') AS w
            FROM pg_policies pp
            WHERE pp.schemaname = ANY(%(schemas)s) AND pp.permissive = 'PERMISSIVE'
              AND pp.roles && ARRAY['public', 'anon', 'authenticated']::name[])
        SELECT tbl, format('policy %%I for %%s to %%s lets every row through', policyname, cmd,
                           array_to_string(roles, ', '))
        FROM p
        WHERE (cmd IN ('UPDATE', 'DELETE', 'ALL') AND (q IN ('true', '(true)', '1=1', '(1=1)') OR qual IS NULL))
           OR w IN ('true', '(true)', '1=1', '(1=1)')
           OR (cmd = 'INSERT' AND with_check IS NULL)"""),
    # Filtered in Python (see unwrapped_calls): splinter's regex passes a
    # policy if any one call is wrapped; every call must be.
    ("0003_auth_rls_initplan", "WARN", """
        SELECT format('%%I.%%I', schemaname, tablename),
               format('policy %%I calls auth.<function>() or current_setting() once per row; '
                      'wrap each call as (select auth.uid())', policyname),
               coalesce(qual, '') || ' ' || coalesce(with_check, '')
        FROM pg_policies WHERE schemaname = ANY(%(schemas)s)"""),
    ("0015_rls_references_user_metadata", "ERROR", """
        SELECT format('%%I.%%I', schemaname, tablename),
               format('policy %%I reads user_metadata, which users can edit themselves', policyname)
        FROM pg_policies
        WHERE schemaname = ANY(%(schemas)s)
          AND (coalesce(qual, '') || coalesce(with_check, '')) ~ 'user_metadata'"""),
    ("0010_security_definer_view", "ERROR", f"""
        SELECT {_NAME}, 'view runs with its owner''s rights (set security_invoker = on)'
        {_FROM_TABLES}
        WHERE c.relkind = 'v' AND n.nspname = ANY(%(schemas)s) AND {_NOT_EXTENSION.format(oid="c.oid")}
          AND (has_table_privilege('anon', c.oid, 'SELECT') OR has_table_privilege('authenticated', c.oid, 'SELECT'))
          AND NOT coalesce(c.reloptions, '{{}}') && ARRAY['security_invoker=on', 'security_invoker=true',
                                                           'security_invoker=1', 'security_invoker=yes']"""),
    ("0016_materialized_view_in_api", "WARN", f"""
        SELECT {_NAME}, 'materialized view is readable by anon or authenticated and has no RLS'
        {_FROM_TABLES}
        WHERE c.relkind = 'm' AND n.nspname = ANY(%(schemas)s) AND {_NOT_EXTENSION.format(oid="c.oid")}
          AND (has_table_privilege('anon', c.oid, 'SELECT') OR has_table_privilege('authenticated', c.oid, 'SELECT'))"""),
    ("0014_extension_in_public", "WARN", """
        SELECT e.extname, 'extension is installed in ' || n.nspname || '; use the extensions schema'
        FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
        WHERE n.nspname = ANY(%(schemas)s)"""),
    # House rule: every table states what each API role may do, even if only
    # a restrictive deny for anon; a role no policy names is an unreviewed gap.
    ("role_without_policy", "WARN", f"""
        SELECT {_NAME}, 'no policy names ' || string_agg(r, ', ' ORDER BY r)
        {_FROM_TABLES} CROSS JOIN unnest(ARRAY['anon', 'authenticated', 'service_role']) r
        WHERE {_TABLES} AND c.relrowsecurity
          AND EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid)
          AND NOT EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid
                          AND (p.polroles @> ARRAY[0::oid]
                               OR p.polroles @> ARRAY[(SELECT oid FROM pg_roles WHERE rolname = r)]))
        GROUP BY n.nspname, c.relname"""),
]

LINTS = tuple(name for name, _, _ in _CHECKS)

# Deparsed policies print a wrapped call as "( SELECT auth.uid() AS uid)".
_CALL = re.compile(r"\b(auth\s*\.\s*(?:uid|jwt|role|email)\s*\(\s*\)|current_setting\s*\()", re.I)
_WRAPPED = re.compile(r"select\s+$", re.I)


def unwrapped_calls(expression: str) -> bool:
    """True when some auth.<fn>() or current_setting() call is not `(select ...)`-wrapped."""
    for m in _CALL.finditer(expression):
        if not _WRAPPED.search(expression[: m.start()]):
            return True
    return False


def run(conn, schemas: tuple[str, ...] = OUR_SCHEMAS) -> list[Finding]:
    """Every finding on `schemas`; an empty list means the schema is clean."""
    findings: list[Finding] = []
    params = {"schemas": list(schemas)}
    for lint, level, sql in _CHECKS:
        for row in conn.execute(sql, params).fetchall():
            if len(row) == 3 and not unwrapped_calls(row[2]):
                continue
            findings.append(Finding(lint, level, row[0], row[1]))
    return sorted(findings, key=lambda f: (f.object, f.lint, f.detail))
