-- What the health function needs in one round trip: the caller's rank (when
-- a member asks) and the migration versions this database has applied.

CREATE OR REPLACE FUNCTION public.health_snapshot(p_user_id uuid DEFAULT NULL) RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = '' AS $$
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
    )
  );
END
$$;

REVOKE ALL ON FUNCTION public.health_snapshot(uuid) FROM PUBLIC, anon, authenticated;
GRANT EXECUTE ON FUNCTION public.health_snapshot(uuid) TO service_role;
