-- Drift in health: a fingerprint of our objects per class, computed in the
-- database in health's one round trip and compared with the fingerprint of
-- the shipped migrations (computed at package time by replaying them:
-- `nexus db fingerprint`, nexus/dbtools/fingerprint.py).
--
-- Classes: tables (tables, columns, constraints), rls (enabled/forced per
-- table), policies, functions (signature, language, security definer,
-- volatility, settings, body) and grants (the API roles' schema usage,
-- table and column privileges, and EXECUTE on our functions). Each is the
-- md5 of its sorted lines (byte order, whatever the database's collation).
--
-- Ours: p_objects names the tables and functions the migrations create
-- ({"tables": ["public.x", ...], "functions": ["public.f", ...]}); anything
-- else in public (a frontend's own tables, say) is not looked at. Without
-- p_objects (a fresh replay, where everything is ours) every object in our
-- schemas that no extension owns is taken, and the names are returned so
-- the caller can ship them.
--
-- Left out, as `nexus db verify` leaves them out (nexus/dbtools/catalog.py):
-- what differs between PostgreSQL 15 and 18 without changing behaviour
-- (NOT NULL constraint rows, owners, OIDs), so 15, 17 and 18 agree.
CREATE OR REPLACE FUNCTION nexus_private.contract_fingerprint(p_objects jsonb DEFAULT NULL)
RETURNS jsonb LANGUAGE plpgsql STABLE SET search_path = '' AS $$
DECLARE
  v_schemas text[] := ARRAY['public', 'nexus_private'];
  v_roles text[] := ARRAY(SELECT r FROM unnest(ARRAY['anon', 'authenticated', 'service_role']) r
                          WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = r));
  v_tables oid[];
  v_functions oid[];
  v_table_names jsonb;
  v_function_names jsonb;
  v_out jsonb := '{}'::jsonb;
BEGIN
  SELECT coalesce(array_agg(c.oid), '{}') INTO v_tables
    FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
   WHERE n.nspname = ANY(v_schemas) AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
     AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.objid = c.oid AND d.deptype = 'e')
     AND (p_objects IS NULL OR (p_objects -> 'tables') ? (n.nspname || '.' || c.relname));
  SELECT coalesce(array_agg(p.oid), '{}') INTO v_functions
    FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
   WHERE n.nspname = ANY(v_schemas)
     AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')
     AND (p_objects IS NULL OR (p_objects -> 'functions') ? (n.nspname || '.' || p.proname));

  SELECT coalesce(jsonb_agg(DISTINCT n.nspname || '.' || c.relname), '[]'::jsonb) INTO v_table_names
    FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
   WHERE c.oid = ANY(v_tables);
  SELECT coalesce(jsonb_agg(DISTINCT n.nspname || '.' || p.proname), '[]'::jsonb) INTO v_function_names
    FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
   WHERE p.oid = ANY(v_functions);

  -- tables: the relations, their columns and constraints
  v_out := v_out || jsonb_build_object('tables', (
    SELECT md5(coalesce(string_agg(line, E'\n' ORDER BY line COLLATE "C"), '')) FROM (
      SELECT jsonb_build_array('table', format('%I.%I', n.nspname, c.relname), c.relkind::text,
               to_jsonb(ARRAY(SELECT o FROM unnest(coalesce(c.reloptions, '{}')) o ORDER BY o COLLATE "C")),
               CASE WHEN c.relkind IN ('v', 'm') THEN pg_catalog.pg_get_viewdef(c.oid) END)::text AS line
        FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
       WHERE c.oid = ANY(v_tables)
      UNION ALL
      SELECT jsonb_build_array('column', format('%I.%I.%I', n.nspname, c.relname, a.attname),
               pg_catalog.format_type(a.atttypid, a.atttypmod), a.attnotnull,
               pg_catalog.pg_get_expr(ad.adbin, ad.adrelid), nullif(a.attidentity, ''),
               nullif(a.attgenerated, ''))::text
        FROM pg_catalog.pg_attribute a
        JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN pg_catalog.pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
       WHERE c.oid = ANY(v_tables) AND a.attnum > 0 AND NOT a.attisdropped
      UNION ALL
      SELECT jsonb_build_array('constraint', format('%I.%I.%I', n.nspname, c.relname, k.conname),
               k.contype::text, pg_catalog.pg_get_constraintdef(k.oid))::text
        FROM pg_catalog.pg_constraint k
        JOIN pg_catalog.pg_class c ON c.oid = k.conrelid
        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
       WHERE c.oid = ANY(v_tables) AND k.contype <> 'n'
    ) t));

  v_out := v_out || jsonb_build_object('rls', (
    SELECT md5(coalesce(string_agg(line, E'\n' ORDER BY line COLLATE "C"), '')) FROM (
      SELECT jsonb_build_array(format('%I.%I', n.nspname, c.relname), c.relrowsecurity,
                               c.relforcerowsecurity)::text AS line
        FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
       WHERE c.oid = ANY(v_tables) AND c.relkind IN ('r', 'p')
    ) t));

  v_out := v_out || jsonb_build_object('policies', (
    SELECT md5(coalesce(string_agg(line, E'\n' ORDER BY line COLLATE "C"), '')) FROM (
      SELECT jsonb_build_array(format('%I.%I.%I', n.nspname, c.relname, p.polname), p.polcmd::text,
               p.polpermissive,
               to_jsonb(ARRAY(SELECT g FROM (SELECT CASE WHEN r = 0 THEN 'public' ELSE r::regrole::text END AS g
                                             FROM unnest(p.polroles) r) roles ORDER BY g COLLATE "C")),
               pg_catalog.pg_get_expr(p.polqual, p.polrelid),
               pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid))::text AS line
        FROM pg_catalog.pg_policy p
        JOIN pg_catalog.pg_class c ON c.oid = p.polrelid
        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
       WHERE c.oid = ANY(v_tables)
    ) t));

  v_out := v_out || jsonb_build_object('functions', (
    SELECT md5(coalesce(string_agg(line, E'\n' ORDER BY line COLLATE "C"), '')) FROM (
      SELECT jsonb_build_array(
               format('%I.%I(%s)', n.nspname, p.proname, pg_catalog.pg_get_function_identity_arguments(p.oid)),
               p.prokind::text,
               CASE WHEN p.prokind <> 'p' THEN pg_catalog.pg_get_function_result(p.oid) END,
               pg_catalog.pg_get_function_arguments(p.oid), l.lanname, p.prosecdef, p.provolatile::text,
               p.proisstrict,
               to_jsonb(ARRAY(SELECT s FROM unnest(coalesce(p.proconfig, '{}')) s ORDER BY s COLLATE "C")),
               md5(p.prosrc))::text AS line
        FROM pg_catalog.pg_proc p
        JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
        JOIN pg_catalog.pg_language l ON l.oid = p.prolang
       WHERE p.oid = ANY(v_functions)
    ) t));

  v_out := v_out || jsonb_build_object('grants', (
    SELECT md5(coalesce(string_agg(line, E'\n' ORDER BY line COLLATE "C"), '')) FROM (
      SELECT jsonb_build_array('schema', n.nspname, r)::text AS line
        FROM pg_catalog.pg_namespace n CROSS JOIN unnest(v_roles) r
       WHERE n.nspname = ANY(v_schemas) AND pg_catalog.has_schema_privilege(r, n.oid, 'USAGE')
      UNION ALL
      SELECT jsonb_build_array('table', format('%I.%I', n.nspname, c.relname), r, priv)::text
        FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        CROSS JOIN unnest(v_roles) r
        CROSS JOIN unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER']) priv
       WHERE c.oid = ANY(v_tables) AND pg_catalog.has_table_privilege(r, c.oid, priv)
      UNION ALL
      SELECT jsonb_build_array('column', format('%I.%I.%I', n.nspname, c.relname, a.attname),
               coalesce(nullif(e.grantee, 0)::regrole::text, 'PUBLIC'), e.privilege_type)::text
        FROM pg_catalog.pg_attribute a
        JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        CROSS JOIN LATERAL aclexplode(a.attacl) e
       WHERE c.oid = ANY(v_tables) AND a.attnum > 0 AND NOT a.attisdropped AND a.attacl IS NOT NULL
         AND (e.grantee = 0 OR e.grantee::regrole::text = ANY(v_roles))
      UNION ALL
      SELECT jsonb_build_array('execute',
               format('%I.%I(%s)', n.nspname, p.proname, pg_catalog.pg_get_function_identity_arguments(p.oid)),
               r)::text
        FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
        CROSS JOIN unnest(v_roles) r
       WHERE p.oid = ANY(v_functions) AND pg_catalog.has_function_privilege(r, p.oid, 'EXECUTE')
    ) t));

  RETURN jsonb_build_object('classes', v_out,
                            'objects', jsonb_build_object('tables', v_table_names, 'functions', v_function_names));
END
$$;

-- health_snapshot gains p_objects (the shipped names); called without it,
-- as the previous version was, it answers as before plus no fingerprint.
DROP FUNCTION IF EXISTS public.health_snapshot(uuid);
CREATE OR REPLACE FUNCTION public.health_snapshot(p_user_id uuid DEFAULT NULL, p_objects jsonb DEFAULT NULL)
RETURNS jsonb LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = '' AS $$
DECLARE
  v_applied jsonb;
BEGIN
  -- The bookkeeping table belongs to the migration tooling (ours or
  -- `supabase db push`); a database migrated by neither has none.
  BEGIN
    SELECT coalesce(jsonb_agg(m.version ORDER BY m.version), '[]'::jsonb)
      INTO v_applied FROM supabase_migrations.schema_migrations m;
  EXCEPTION WHEN undefined_table OR invalid_schema_name OR insufficient_privilege THEN
    v_applied := NULL;
  END;
  RETURN jsonb_build_object(
    'applied', v_applied,
    'server_version', current_setting('server_version_num')::integer,
    'member', (
      SELECT jsonb_build_object('rank', p.rank, 'roles', to_jsonb(p.roles))
      FROM public.profiles p WHERE p.id = p_user_id
    ),
    'fingerprint', CASE WHEN p_objects IS NOT NULL
                        THEN nexus_private.contract_fingerprint(p_objects) -> 'classes' END
  );
END
$$;

REVOKE ALL ON FUNCTION nexus_private.contract_fingerprint(jsonb) FROM PUBLIC, anon, authenticated, service_role;
REVOKE ALL ON FUNCTION public.health_snapshot(uuid, jsonb) FROM PUBLIC, anon, authenticated;
GRANT EXECUTE ON FUNCTION public.health_snapshot(uuid, jsonb) TO service_role;
