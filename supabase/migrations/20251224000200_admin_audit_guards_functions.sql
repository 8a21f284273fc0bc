-- The audit is what it says (issue 24): no UPDATE, DELETE or TRUNCATE
-- succeeds for any role, its owner included, short of DDL on the table (the
-- row trigger of 20251218000100 and a statement trigger for TRUNCATE, both
-- firing whatever session_replication_role says, and the privileges in the
-- next migration); health's drift check fingerprints triggers, so a guard
-- dropped or disabled shows there as in `nexus db verify`. Also: an operator
-- changes a member's callsign under the callsign rules, audited; and LiveKit
-- never shows a grandfathered callsign (it would pass for an older member's).

CREATE OR REPLACE FUNCTION nexus_private.admin_audit_append_only() RETURNS trigger
LANGUAGE plpgsql SET search_path = '' AS $$
BEGIN
  RAISE EXCEPTION 'admin_audit rows are never changed or removed' USING ERRCODE = '42501';
END
$$;

CREATE TRIGGER admin_audit_no_truncate
  BEFORE TRUNCATE ON public.admin_audit
  FOR EACH STATEMENT EXECUTE FUNCTION nexus_private.admin_audit_append_only();
-- ALWAYS: a session in replica mode (session_replication_role, as a logical
-- replication apply or a restore sets it) does not skip them either.
ALTER TABLE public.admin_audit ENABLE ALWAYS TRIGGER admin_audit_append_only;
ALTER TABLE public.admin_audit ENABLE ALWAYS TRIGGER admin_audit_no_truncate;

-- `nexus admin callsign USER CALLSIGN`: an operator sets a member's callsign
-- (to settle a grandfathered clash, say), under the same rules as the member
-- (profiles_callsign_unclaimed and the unique indexes), audited. A refusal
-- writes nothing: CALLSIGN_TAKEN (the same callsign) or CALLSIGN_REFUSED,
-- each naming the rule.
CREATE OR REPLACE FUNCTION public.admin_callsign_set(
  p_operator text, p_member_id uuid, p_callsign text, p_reason text
) RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' SET lock_timeout = '5s' AS $$
DECLARE
  v_before text;
  v_rule text;
  v_audit bigint;
BEGIN
  IF NOT coalesce(public.text_is_shown_plainly(btrim(p_reason)), false) OR char_length(btrim(p_reason)) > 500 THEN
    RETURN jsonb_build_object('error', 'BAD_REQUEST', 'field', 'reason',
                              'message', 'a reason of 1 to 500 characters others may be shown');
  END IF;
  IF NOT coalesce(public.text_is_shown_plainly(btrim(p_operator)), false) OR char_length(btrim(p_operator)) > 120 THEN
    RETURN jsonb_build_object('error', 'BAD_REQUEST', 'field', 'operator',
                              'message', 'an operator label of 1 to 120 characters others may be shown');
  END IF;
  IF NOT coalesce(public.text_is_shown_plainly(p_callsign), false) OR char_length(p_callsign) > 64 THEN
    RETURN jsonb_build_object('error', 'BAD_REQUEST', 'field', 'callsign',
                              'message', 'a callsign of 1 to 64 characters others may be shown');
  END IF;
  SELECT callsign INTO v_before FROM public.profiles WHERE id = p_member_id FOR UPDATE;
  IF NOT FOUND THEN
    RETURN jsonb_build_object('error', 'MEMBER_NOT_FOUND');
  END IF;
  BEGIN
    UPDATE public.profiles SET callsign = p_callsign WHERE id = p_member_id;
  EXCEPTION
    WHEN unique_violation THEN
      GET STACKED DIAGNOSTICS v_rule = CONSTRAINT_NAME;
      RETURN jsonb_build_object('error', 'CALLSIGN_TAKEN', 'rule', v_rule);
    WHEN check_violation THEN
      GET STACKED DIAGNOSTICS v_rule = CONSTRAINT_NAME;
      RETURN jsonb_build_object('error', 'CALLSIGN_REFUSED', 'rule', v_rule);
  END;
  INSERT INTO public.admin_audit (actor, actor_label, action, member_id, before, after, reason)
  VALUES ('operator', btrim(p_operator), 'member.callsign', p_member_id,
          jsonb_build_object('callsign', v_before), jsonb_build_object('callsign', p_callsign), btrim(p_reason))
  RETURNING id INTO v_audit;
  RETURN jsonb_build_object('auditId', v_audit, 'userId', p_member_id, 'callsign', p_callsign, 'before', v_before);
END
$$;

-- livekit-token: the profile says whether its callsign is grandfathered, and
-- shared/livekit_tokens.display_name does not show one that is.
CREATE OR REPLACE FUNCTION public.livekit_token_context(p_user_id uuid, p_room text) RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = '' AS $$
  WITH net AS (
    SELECT n.* FROM public.voice_nets n WHERE n.code = p_room
  ), bridged AS (
    SELECT o.* FROM net
    JOIN public.voice_net_bridges b ON b.source_net_id = net.id
    JOIN public.voice_nets o ON o.id = b.target_net_id
    UNION ALL
    SELECT o.* FROM net
    JOIN public.voice_net_bridges b ON b.target_net_id = net.id
    JOIN public.voice_nets o ON o.id = b.source_net_id
  )
  SELECT jsonb_build_object(
    'profile', (
      SELECT jsonb_build_object('rank', p.rank, 'roles', to_jsonb(p.roles), 'callsign', p.callsign,
                                'callsign_grandfathered', p.callsign_grandfathered)
      FROM public.profiles p WHERE p.id = p_user_id
    ),
    'net', (
      SELECT jsonb_build_object(
        'id', n.id, 'code', n.code, 'label', n.label,
        'min_rank_to_join', n.min_rank_to_join,
        'min_rank_to_rx', n.min_rank_to_rx,
        'min_rank_to_tx', n.min_rank_to_tx)
      FROM net n
    ),
    'bridges', (
      SELECT coalesce(jsonb_agg(jsonb_build_object(
        'id', o.id, 'code', o.code, 'label', o.label,
        'min_rank_to_join', o.min_rank_to_join,
        'min_rank_to_rx', o.min_rank_to_rx,
        'min_rank_to_tx', o.min_rank_to_tx) ORDER BY o.code), '[]'::jsonb)
      FROM bridged o
    ),
    'sim_pod', (
      SELECT jsonb_build_object(
        'id', s.id, 'room_name', s.room_name, 'cadet_id', s.cadet_id, 'guide_id', s.guide_id,
        'live', s.ended_at IS NULL AND s.expires_at > now(),
        'seconds_left', greatest(0, floor(extract(epoch FROM s.expires_at - now())))::bigint)
      FROM public.sim_pods s WHERE s.room_name = p_room
    )
  )
$$;

-- academy-accept: a grandfathered guide's callsign is neither shown in the
-- sim pod nor named in the cadet's push.
CREATE OR REPLACE FUNCTION public.academy_accept(
  p_user_id uuid, p_request_id uuid, p_pod_ttl_seconds integer, p_max_age_seconds integer
) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' AS $$
DECLARE
  v_rank text;
  v_roles text[];
  v_callsign text;
  v_req public.instruction_requests%ROWTYPE;
  v_skill text;
  v_pod text;
  v_expires timestamptz;
BEGIN
  SELECT rank, roles, CASE WHEN callsign_grandfathered THEN NULL ELSE callsign END
    INTO v_rank, v_roles, v_callsign FROM public.profiles WHERE id = p_user_id;
  IF NOT FOUND THEN
    RETURN jsonb_build_object('error', 'NO_PROFILE');
  END IF;
  -- A callsign from before the text rules (20251216) that breaks them is not shown.
  IF NOT public.text_is_shown_plainly(v_callsign) THEN
    v_callsign := NULL;
  END IF;
  IF nexus_private.is_brigged(v_roles) THEN
    RETURN jsonb_build_object('error', 'BRIGGED');
  END IF;
  SELECT * INTO v_req FROM public.instruction_requests WHERE id = p_request_id;
  IF NOT FOUND THEN
    RETURN jsonb_build_object('error', 'REQUEST_NOT_FOUND');
  END IF;
  IF v_req.cadet_id = p_user_id THEN
    RETURN jsonb_build_object('error', 'OWN_REQUEST');
  END IF;
  IF NOT EXISTS (SELECT 1 FROM public.certifications c WHERE c.user_id = p_user_id AND c.skill_id = v_req.skill_id) THEN
    RETURN jsonb_build_object('error', 'NOT_CERTIFIED', 'skillId', v_req.skill_id);
  END IF;

  UPDATE public.instruction_requests
  SET status = 'ACCEPTED', guide_id = p_user_id, accepted_at = now(), updated_at = now()
  WHERE id = p_request_id AND status = 'PENDING'
    AND created_at > now() - make_interval(secs => p_max_age_seconds)
  RETURNING * INTO v_req;
  IF NOT FOUND THEN
    SELECT * INTO v_req FROM public.instruction_requests WHERE id = p_request_id;
    RETURN jsonb_build_object('error', 'NOT_PENDING', 'requestId', p_request_id,
                              'status', CASE WHEN v_req.status = 'PENDING' THEN 'EXPIRED' ELSE v_req.status END);
  END IF;

  v_pod := 'sim-pod-' || replace(gen_random_uuid()::text, '-', '');
  -- whole seconds, so the expiry the client sees is the one enforced
  v_expires := date_trunc('second', now()) + make_interval(secs => p_pod_ttl_seconds);
  INSERT INTO public.sim_pods (id, request_id, room_name, cadet_id, guide_id, expires_at)
  VALUES (v_pod, p_request_id, v_pod, v_req.cadet_id, p_user_id, v_expires);
  UPDATE public.instruction_requests SET sim_pod_id = v_pod WHERE id = p_request_id;

  SELECT name INTO v_skill FROM public.skills WHERE id = v_req.skill_id;
  INSERT INTO public.notification_queue (recipient_id, type, title, message, payload)
  VALUES (
    v_req.cadet_id,
    'ACADEMY_ACCEPTED',
    'Your guide is ready: ' || v_skill,
    coalesce(v_callsign, 'A guide') || ' accepted your ' || v_skill || ' request. Join the sim pod now.',
    jsonb_build_object('requestId', p_request_id, 'skillId', v_req.skill_id, 'skillName', v_skill,
                       'simPodId', v_pod, 'roomName', v_pod, 'expiresAt', v_expires,
                       'guideId', p_user_id, 'guideCallsign', v_callsign));

  RETURN jsonb_build_object(
    'requestId', p_request_id,
    'simPodId', v_pod,
    'roomName', v_pod,
    'expiresAt', extract(epoch FROM v_expires)::bigint,
    'cadetId', v_req.cadet_id,
    'guide', jsonb_build_object('rank', v_rank, 'callsign', v_callsign));
END
$$;

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
  v_foreign_columns text[] := '{}';
BEGIN
  -- An adopted database's foreign columns on our tables (profiles.email, ...)
  -- are not ours (20251220000100_adopt_predecessor_convert.sql records them).
  IF to_regclass('nexus_adopt.foreign_objects') IS NOT NULL THEN
    EXECUTE $q$SELECT coalesce(array_agg(name), '{}') FROM nexus_adopt.foreign_objects WHERE kind = 'column'$q$
      INTO v_foreign_columns;
  END IF;
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
         AND NOT format('%I.%I.%I', n.nspname, c.relname, a.attname) = ANY(v_foreign_columns)
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

  -- triggers: on our tables, and anywhere (auth.users) calling a function of
  -- ours; a guard dropped or disabled (the audit's append-only triggers) shows.
  v_out := v_out || jsonb_build_object('triggers', (
    SELECT md5(coalesce(string_agg(line, E'\n' ORDER BY line COLLATE "C"), '')) FROM (
      SELECT jsonb_build_array(format('%I.%I.%I', n.nspname, c.relname, t.tgname),
               pg_catalog.pg_get_triggerdef(t.oid), t.tgenabled::text)::text AS line
        FROM pg_catalog.pg_trigger t
        JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid
        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
       WHERE NOT t.tgisinternal AND (c.oid = ANY(v_tables) OR t.tgfoid = ANY(v_functions))
    ) t));

  RETURN jsonb_build_object('classes', v_out,
                            'objects', jsonb_build_object('tables', v_table_names, 'functions', v_function_names));
END
$$;

REVOKE ALL ON FUNCTION nexus_private.admin_audit_append_only() FROM PUBLIC, anon, authenticated;
REVOKE ALL ON FUNCTION public.admin_callsign_set(text, uuid, text, text) FROM PUBLIC, anon, authenticated;
GRANT EXECUTE ON FUNCTION public.admin_callsign_set(text, uuid, text, text) TO service_role;
REVOKE ALL ON FUNCTION public.livekit_token_context(uuid, text) FROM PUBLIC, anon, authenticated;
GRANT EXECUTE ON FUNCTION public.livekit_token_context(uuid, text) TO service_role;
REVOKE ALL ON FUNCTION public.academy_accept(uuid, uuid, integer, integer) FROM PUBLIC, anon, authenticated;
GRANT EXECUTE ON FUNCTION public.academy_accept(uuid, uuid, integer, integer) TO service_role;
REVOKE ALL ON FUNCTION nexus_private.contract_fingerprint(jsonb) FROM PUBLIC, anon, authenticated, service_role;
