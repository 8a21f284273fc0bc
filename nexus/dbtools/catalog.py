"""A normalized snapshot of the schema we own, read from the catalogs.

The snapshot is what `verify` compares and what the replay tests dump:
{kind: {object name: {attribute: value}}}, with every value a plain string,
bool or sorted list, so two databases are equal exactly when their contracts
are. Only our schemas count, plus triggers elsewhere (auth.users) that call
our functions. Catalog details that differ between PostgreSQL 15 and 18
without changing behaviour (NOT NULL constraint rows, owners, OIDs) are left
out on purpose.
"""

from __future__ import annotations

import json
from typing import Any

OUR_SCHEMAS = ("public", "nexus_private")
API_ROLES = ("anon", "authenticated", "service_role")
PUBLICATION = "supabase_realtime"

# Objects that belong to an extension are the extension's, not ours.
_NOT_EXTENSION = "NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = {oid} AND d.deptype = 'e')"

_QUERIES: dict[str, str] = {
    "schema": """
        SELECT n.nspname,
               jsonb_build_object('usage', to_jsonb(ARRAY(
                   SELECT r FROM unnest(%(roles)s::text[]) r
                   WHERE EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r)
                     AND has_schema_privilege(r, n.oid, 'USAGE') ORDER BY r)))
        FROM pg_namespace n WHERE n.nspname = ANY(%(schemas)s)
    """,
    "table": """
        SELECT format('%%I.%%I', n.nspname, c.relname),
               jsonb_build_object(
                 'kind', CASE c.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'partitioned table'
                         WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view' ELSE 'foreign table' END,
                 'rls_enabled', c.relrowsecurity,
                 'rls_forced', c.relforcerowsecurity,
                 'options', to_jsonb(ARRAY(SELECT o FROM unnest(coalesce(c.reloptions, '{}')) o ORDER BY o)),
                 'definition', CASE WHEN c.relkind IN ('v', 'm') THEN pg_get_viewdef(c.oid) END)
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = ANY(%(schemas)s) AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
          AND """ + _NOT_EXTENSION.format(oid="c.oid") + """
    """,
    "column": """
        SELECT format('%%I.%%I.%%I', n.nspname, c.relname, a.attname),
               jsonb_build_object(
                 'type', format_type(a.atttypid, a.atttypmod),
                 'not_null', a.attnotnull,
                 'default', pg_get_expr(ad.adbin, ad.adrelid),
                 'identity', nullif(a.attidentity, ''),
                 'generated', nullif(a.attgenerated, ''))
        FROM pg_attribute a
        JOIN pg_class c ON c.oid = a.attrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
        WHERE n.nspname = ANY(%(schemas)s) AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
          AND a.attnum > 0 AND NOT a.attisdropped
          AND """ + _NOT_EXTENSION.format(oid="c.oid") + """
    """,
    # PostgreSQL 18 records NOT NULL as constraints with generated names;
    # nullability is compared on the column instead so 15-17 and 18 agree.
    "constraint": """
        SELECT format('%%I.%%I.%%I', n.nspname, c.relname, k.conname),
               jsonb_build_object('type', k.contype::text, 'definition', pg_get_constraintdef(k.oid))
        FROM pg_constraint k
        JOIN pg_class c ON c.oid = k.conrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = ANY(%(schemas)s) AND k.contype <> 'n'
          AND """ + _NOT_EXTENSION.format(oid="c.oid") + """
    """,
    "index": """
        SELECT format('%%I.%%I', n.nspname, i.relname),
               jsonb_build_object('table', format('%%I.%%I', n.nspname, c.relname),
                                  'definition', pg_get_indexdef(x.indexrelid),
                                  'valid', x.indisvalid)
        FROM pg_index x
        JOIN pg_class i ON i.oid = x.indexrelid
        JOIN pg_class c ON c.oid = x.indrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = ANY(%(schemas)s)
          AND """ + _NOT_EXTENSION.format(oid="c.oid") + """
    """,
    "policy": """
        SELECT format('%%I.%%I.%%I', p.schemaname, p.tablename, p.policyname),
               jsonb_build_object('command', p.cmd, 'permissive', p.permissive,
                                  'roles', to_jsonb(ARRAY(SELECT r FROM unnest(p.roles) r ORDER BY r)),
                                  'using', p.qual, 'with_check', p.with_check)
        FROM pg_policies p WHERE p.schemaname = ANY(%(schemas)s)
    """,
    "function": """
        SELECT format('%%I.%%I(%%s)', n.nspname, p.proname, pg_get_function_identity_arguments(p.oid)),
               jsonb_build_object(
                 'kind', p.prokind::text,
                 'returns', CASE WHEN p.prokind <> 'p' THEN pg_get_function_result(p.oid) END,
                 'arguments', pg_get_function_arguments(p.oid),
                 'language', l.lanname,
                 'security_definer', p.prosecdef,
                 'volatility', CASE p.provolatile WHEN 'i' THEN 'immutable' WHEN 's' THEN 'stable' ELSE 'volatile' END,
                 'strict', p.proisstrict,
                 'config', to_jsonb(ARRAY(SELECT s FROM unnest(coalesce(p.proconfig, '{}')) s ORDER BY s)),
                 'body_md5', md5(p.prosrc),
                 'executable_by', to_jsonb(ARRAY(
                     SELECT r FROM unnest(%(roles)s::text[]) r
                     WHERE EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r)
                       AND has_function_privilege(r, p.oid, 'EXECUTE') ORDER BY r)))
        FROM pg_proc p
        JOIN pg_namespace n ON n.oid = p.pronamespace
        JOIN pg_language l ON l.oid = p.prolang
        WHERE n.nspname = ANY(%(schemas)s)
          AND """ + _NOT_EXTENSION.format(oid="p.oid") + """
    """,
    # Ours: triggers on our tables, and triggers anywhere (auth.users) that
    # call a function of ours.
    "trigger": """
        SELECT format('%%I.%%I.%%I', n.nspname, c.relname, t.tgname),
               jsonb_build_object('definition', pg_get_triggerdef(t.oid), 'enabled', t.tgenabled::text)
        FROM pg_trigger t
        JOIN pg_class c ON c.oid = t.tgrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_proc f ON f.oid = t.tgfoid
        JOIN pg_namespace fn ON fn.oid = f.pronamespace
        WHERE NOT t.tgisinternal
          AND (n.nspname = ANY(%(schemas)s) OR fn.nspname = ANY(%(schemas)s))
    """,
    # Table privileges of the API roles, which are what RLS stands behind.
    "privilege": """
        SELECT format('%%I.%%I', n.nspname, c.relname),
               jsonb_object_agg(r, to_jsonb(ARRAY(
                   SELECT priv FROM unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE',
                                                 'REFERENCES', 'TRIGGER']) priv
                   WHERE has_table_privilege(r, c.oid, priv) ORDER BY priv)))
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        CROSS JOIN unnest(%(roles)s::text[]) r
        WHERE n.nspname = ANY(%(schemas)s) AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
          AND EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r)
          AND """ + _NOT_EXTENSION.format(oid="c.oid") + """
        GROUP BY n.nspname, c.relname
    """,
    "column privilege": """
        SELECT format('%%I.%%I.%%I', n.nspname, c.relname, a.attname),
               jsonb_object_agg(g.grantee, g.privs)
        FROM pg_attribute a
        JOIN pg_class c ON c.oid = a.attrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        CROSS JOIN LATERAL (
            SELECT coalesce(nullif(e.grantee, 0)::regrole::text, 'PUBLIC') AS grantee,
                   to_jsonb(array_agg(e.privilege_type ORDER BY e.privilege_type)) AS privs
            FROM aclexplode(a.attacl) e GROUP BY e.grantee) g
        WHERE n.nspname = ANY(%(schemas)s) AND a.attnum > 0 AND NOT a.attisdropped
          AND a.attacl IS NOT NULL AND (g.grantee = ANY(%(roles)s) OR g.grantee = 'PUBLIC')
        GROUP BY n.nspname, c.relname, a.attname
    """,
    "type": """
        SELECT format('%%I.%%I', n.nspname, t.typname),
               jsonb_build_object(
                 'kind', CASE t.typtype WHEN 'e' THEN 'enum' WHEN 'd' THEN 'domain' ELSE 'composite' END,
                 'labels', CASE WHEN t.typtype = 'e' THEN to_jsonb(ARRAY(
                     SELECT enumlabel FROM pg_enum WHERE enumtypid = t.oid ORDER BY enumsortorder)) END,
                 'base', CASE WHEN t.typtype = 'd' THEN format_type(t.typbasetype, t.typtypmod) END,
                 'checks', CASE WHEN t.typtype = 'd' THEN to_jsonb(ARRAY(
                     SELECT pg_get_constraintdef(k.oid) FROM pg_constraint k
                     WHERE k.contypid = t.oid AND k.contype = 'c' ORDER BY 1)) END)
        FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
        WHERE n.nspname = ANY(%(schemas)s)
          AND (t.typtype IN ('e', 'd')
               OR (t.typtype = 'c' AND (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c'))
          AND """ + _NOT_EXTENSION.format(oid="t.oid") + """
    """,
    "extension": """
        SELECT e.extname, jsonb_build_object('schema', n.nspname)
        FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
    """,
    "realtime publication": """
        SELECT format('%%I.%%I', p.schemaname, p.tablename), jsonb_build_object('published', true)
        FROM pg_publication_tables p
        WHERE p.pubname = %(publication)s AND p.schemaname = ANY(%(schemas)s)
    """,
}

KINDS = tuple(_QUERIES)

Snapshot = dict[str, dict[str, dict[str, Any]]]


def snapshot(conn, schemas: tuple[str, ...] = OUR_SCHEMAS) -> Snapshot:
    """Read the contract of `schemas` from the database behind `conn`."""
    params = {"schemas": list(schemas), "roles": list(API_ROLES), "publication": PUBLICATION}
    out: Snapshot = {}
    for kind, sql in _QUERIES.items():
        rows = conn.execute(sql, params).fetchall()
        out[kind] = {name: attrs for name, attrs in sorted(rows)}
    return out


def dump(snap: Snapshot) -> str:
    """A stable text form: equal contracts give byte-identical dumps."""
    return json.dumps(snap, indent=1, sort_keys=True)
