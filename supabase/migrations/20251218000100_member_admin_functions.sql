-- Member administration (issue 16): canonical role spellings, voice rights,
-- one SQL function per change (check + change + audit row), and the triggers
-- and job functions through which LiveKit follows every change.

-- The one spelling a role is stored in. Case-insensitive: brigged, Medic and
-- Rescue are the project's own (`brig` is taken as `brigged`); any other role
-- keeps the spelling it is written with (trimmed). A member holding a role in
-- another case keeps their first spelling (member_admin_change).
CREATE OR REPLACE FUNCTION public.canonical_role(p_role text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SET search_path = '' AS $$
  SELECT CASE lower(btrim(p_role))
    WHEN 'brig' THEN 'brigged'
    WHEN 'brigged' THEN 'brigged'
    WHEN 'medic' THEN 'Medic'
    WHEN 'rescue' THEN 'Rescue'
    ELSE btrim(p_role) END
$$;

-- What a member may do in a LiveKit room now, by the rules livekit-token mints
-- with (shared/ranks.py; tests hold the two to the same answers): a net by its
-- thresholds, a sim pod only for its cadet and guide while live, nothing for a
-- brigged member, a member without a profile, or a room that is neither.
CREATE OR REPLACE FUNCTION public.voice_rights(p_user_id uuid, p_room text) RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = '' AS $$
DECLARE
  v_rank text;
  v_roles text[];
  v_level integer;
  v_net public.voice_nets%ROWTYPE;
  v_pod public.sim_pods%ROWTYPE;
  v_join boolean := false;
  v_rx boolean := false;
  v_tx boolean := false;
BEGIN
  SELECT rank, roles INTO v_rank, v_roles FROM public.profiles WHERE id = p_user_id;
  IF FOUND AND NOT nexus_private.is_brigged(v_roles) THEN
    v_level := public.rank_level(v_rank);
    SELECT * INTO v_pod FROM public.sim_pods WHERE room_name = p_room;
    IF FOUND THEN
      v_join := p_user_id IN (v_pod.cadet_id, v_pod.guide_id) AND v_pod.ended_at IS NULL AND v_pod.expires_at > now();
      v_rx := v_join;
      v_tx := v_join AND v_rank <> 'vagrant';
    ELSE
      SELECT * INTO v_net FROM public.voice_nets WHERE code = p_room;
      IF FOUND THEN
        v_join := v_level >= public.rank_level(v_net.min_rank_to_join);
        v_rx := v_join AND v_level >= public.rank_level(v_net.min_rank_to_rx);
        v_tx := v_join AND v_level >= public.rank_level(v_net.min_rank_to_tx) AND v_rank <> 'vagrant';
      END IF;
    END IF;
  END IF;
  RETURN jsonb_build_object('userId', p_user_id, 'room', p_room, 'rank', v_rank, 'canJoin', v_join,
                            'canSubscribe', v_rx, 'canPublish', v_tx, 'canPublishData', v_tx);
END
$$;

-- Queue a LiveKit access job, merged into the pending one for the same target
-- (applying brings LiveKit to current rights, so one is enough); returns its id.
CREATE OR REPLACE FUNCTION nexus_private.livekit_access_enqueue(p_user_id uuid, p_room text, p_cause text)
RETURNS bigint LANGUAGE plpgsql SET search_path = '' AS $$
DECLARE
  v_id bigint;
BEGIN
  INSERT INTO nexus_private.livekit_access_jobs AS j (user_id, room_name, cause)
  VALUES (p_user_id, p_room, p_cause)
  ON CONFLICT ((coalesce(user_id, '00000000-0000-0000-0000-000000000000'::uuid)), (coalesce(room_name, '')))
    WHERE status = 'pending'
  DO UPDATE SET next_run_at = least(j.next_run_at, now()), attempt = 0, updated_at = now()
  RETURNING id INTO v_id;
  RETURN v_id;
END
$$;

-- However a rank or roles change is made (member_admin_change, nexus admin,
-- SQL in the dashboard), it is queued in the same transaction.
CREATE OR REPLACE FUNCTION nexus_private.profiles_queue_livekit_access() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' AS $$
BEGIN
  PERFORM nexus_private.livekit_access_enqueue(OLD.id, NULL, 'profile');
  RETURN NULL;
END
$$;

CREATE TRIGGER profiles_queue_livekit_access
  AFTER UPDATE OF rank, roles ON public.profiles
  FOR EACH ROW WHEN (OLD.rank IS DISTINCT FROM NEW.rank OR OLD.roles IS DISTINCT FROM NEW.roles)
  EXECUTE FUNCTION nexus_private.profiles_queue_livekit_access();
CREATE TRIGGER profiles_deleted_queue_livekit_access
  AFTER DELETE ON public.profiles
  FOR EACH ROW EXECUTE FUNCTION nexus_private.profiles_queue_livekit_access();

-- A net's thresholds (or its code, or the net itself) changed: everyone in its room.
CREATE OR REPLACE FUNCTION nexus_private.voice_nets_queue_livekit_access() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' AS $$
BEGIN
  PERFORM nexus_private.livekit_access_enqueue(NULL, OLD.code, 'net');
  IF TG_OP = 'UPDATE' AND NEW.code <> OLD.code THEN
    PERFORM nexus_private.livekit_access_enqueue(NULL, NEW.code, 'net');
  END IF;
  RETURN NULL;
END
$$;

CREATE TRIGGER voice_nets_queue_livekit_access
  AFTER UPDATE OF min_rank_to_join, min_rank_to_rx, min_rank_to_tx, code ON public.voice_nets
  FOR EACH ROW WHEN (OLD.min_rank_to_join IS DISTINCT FROM NEW.min_rank_to_join
    OR OLD.min_rank_to_rx IS DISTINCT FROM NEW.min_rank_to_rx
    OR OLD.min_rank_to_tx IS DISTINCT FROM NEW.min_rank_to_tx
    OR OLD.code IS DISTINCT FROM NEW.code)
  EXECUTE FUNCTION nexus_private.voice_nets_queue_livekit_access();
CREATE TRIGGER voice_nets_deleted_queue_livekit_access
  AFTER DELETE ON public.voice_nets
  FOR EACH ROW EXECUTE FUNCTION nexus_private.voice_nets_queue_livekit_access();

-- The audit is append-only, even for the table's owner.
CREATE OR REPLACE FUNCTION nexus_private.admin_audit_append_only() RETURNS trigger
LANGUAGE plpgsql SET search_path = '' AS $$
BEGIN
  RAISE EXCEPTION 'admin_audit rows are never changed or removed' USING ERRCODE = '42501';
END
$$;

CREATE TRIGGER admin_audit_append_only
  BEFORE UPDATE OR DELETE ON public.admin_audit
  FOR EACH ROW EXECUTE FUNCTION nexus_private.admin_audit_append_only();

-- Who is acting: a founder+ member who is not brigged, or an operator with a
-- label. NULL when allowed, else the refusal.
CREATE OR REPLACE FUNCTION nexus_private.admin_actor_refusal(p_actor_id uuid, p_operator text) RETURNS jsonb
LANGUAGE plpgsql STABLE SET search_path = '' AS $$
DECLARE
  v_rank text;
  v_roles text[];
BEGIN
  IF p_actor_id IS NULL THEN
    IF nullif(btrim(coalesce(p_operator, '')), '') IS NULL THEN
      RAISE EXCEPTION 'an admin change needs an actor or an operator label' USING ERRCODE = '22023';
    END IF;
    RETURN NULL;
  END IF;
  SELECT rank, roles INTO v_rank, v_roles FROM public.profiles WHERE id = p_actor_id;
  IF NOT FOUND THEN
    RETURN jsonb_build_object('error', 'NO_PROFILE');
  END IF;
  IF nexus_private.is_brigged(v_roles) THEN
    RETURN jsonb_build_object('error', 'BRIGGED');
  END IF;
  IF public.rank_level(v_rank) < public.rank_level('founder') THEN
    RETURN jsonb_build_object('error', 'INSUFFICIENT_CLEARANCE', 'required', 'founder', 'rank', v_rank);
  END IF;
  RETURN NULL;
END
$$;

-- member-admin and `nexus admin member`: change a member's rank and roles.
-- One transaction: lock actor and member (in id order, so two founders
-- changing each other cannot deadlock), check, change, audit. A refusal
-- returns {"error": ...} before anything is written. Concurrent changes to
-- one member queue on its row lock, so each audit row's `before` is exactly
-- the state it replaced. Rules for a member actor: founder+, not brigged, not
-- themselves, only members strictly below them, nobody raised to their rank
-- or above. An operator (p_actor_id NULL, p_operator the label) is not ranked.
CREATE OR REPLACE FUNCTION public.member_admin_change(
  p_actor_id uuid, p_member_id uuid, p_rank text, p_add_roles jsonb, p_remove_roles jsonb, p_reason text,
  p_operator text DEFAULT NULL
) RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' SET lock_timeout = '5s' AS $$
DECLARE
  v_add_list text[];
  v_remove_list text[];
  v_refusal jsonb;
  v_actor_rank text;
  v_member public.profiles%ROWTYPE;
  v_roles text[];
  v_role text;
  v_canon text;
  v_rank text;
  v_add text[];
  v_remove text[];
  v_audit bigint;
  v_job bigint;
BEGIN
  IF jsonb_typeof(coalesce(p_add_roles, '[]')) <> 'array' OR jsonb_typeof(coalesce(p_remove_roles, '[]')) <> 'array'
     OR EXISTS (SELECT 1 FROM jsonb_array_elements(coalesce(p_add_roles, '[]') || coalesce(p_remove_roles, '[]')) e
                 WHERE jsonb_typeof(e) <> 'string') THEN
    RETURN jsonb_build_object('error', 'BAD_REQUEST', 'field', 'roles', 'message', 'roles are a list of names');
  END IF;
  v_add_list := ARRAY(SELECT jsonb_array_elements_text(coalesce(p_add_roles, '[]')));
  v_remove_list := ARRAY(SELECT jsonb_array_elements_text(coalesce(p_remove_roles, '[]')));
  v_add := ARRAY(SELECT DISTINCT lower(public.canonical_role(r)) FROM unnest(v_add_list) r);
  v_remove := ARRAY(SELECT DISTINCT lower(public.canonical_role(r)) FROM unnest(v_remove_list) r);
  IF nullif(btrim(coalesce(p_reason, '')), '') IS NULL THEN
    RETURN jsonb_build_object('error', 'BAD_REQUEST', 'field', 'reason', 'message', 'a reason is required');
  END IF;
  IF p_rank IS NOT NULL AND public.rank_level(p_rank) IS NULL THEN
    RETURN jsonb_build_object('error', 'BAD_REQUEST', 'field', 'rank', 'message', 'unknown rank');
  END IF;
  IF EXISTS (SELECT 1 FROM unnest(v_add_list || v_remove_list) r
              WHERE nullif(btrim(coalesce(r, '')), '') IS NULL) THEN
    RETURN jsonb_build_object('error', 'BAD_REQUEST', 'field', 'roles', 'message', 'role names may not be empty');
  END IF;
  IF v_add && v_remove THEN
    RETURN jsonb_build_object('error', 'BAD_REQUEST', 'field', 'roles',
                              'message', 'a role cannot be both added and removed');
  END IF;

  PERFORM 1 FROM public.profiles WHERE id IN (p_actor_id, p_member_id) ORDER BY id FOR UPDATE;
  v_refusal := nexus_private.admin_actor_refusal(p_actor_id, p_operator);
  IF v_refusal IS NOT NULL THEN
    RETURN v_refusal;
  END IF;
  IF p_actor_id = p_member_id THEN
    RETURN jsonb_build_object('error', 'SELF');
  END IF;
  SELECT * INTO v_member FROM public.profiles WHERE id = p_member_id;
  IF NOT FOUND THEN
    RETURN jsonb_build_object('error', 'MEMBER_NOT_FOUND');
  END IF;
  IF p_actor_id IS NOT NULL THEN
    SELECT rank INTO v_actor_rank FROM public.profiles WHERE id = p_actor_id;
    IF public.rank_level(v_member.rank) >= public.rank_level(v_actor_rank) THEN
      RETURN jsonb_build_object('error', 'MEMBER_OUTRANKS', 'rank', v_actor_rank, 'memberRank', v_member.rank);
    END IF;
    IF p_rank IS NOT NULL AND public.rank_level(p_rank) >= public.rank_level(v_actor_rank) THEN
      RETURN jsonb_build_object('error', 'RANK_TOO_HIGH', 'rank', v_actor_rank, 'requested', p_rank);
    END IF;
  END IF;

  -- Roles: removals match case-insensitively through the canonical spelling;
  -- an added role the member already holds in any spelling is not added twice.
  v_roles := ARRAY(SELECT r FROM unnest(v_member.roles) WITH ORDINALITY AS t(r, i)
                    WHERE lower(public.canonical_role(r)) <> ALL (v_remove) ORDER BY i);
  FOREACH v_role IN ARRAY v_add_list LOOP
    v_canon := public.canonical_role(v_role);
    IF NOT EXISTS (SELECT 1 FROM unnest(v_roles) r WHERE lower(public.canonical_role(r)) = lower(v_canon)) THEN
      v_roles := v_roles || v_canon;
    END IF;
  END LOOP;
  v_rank := coalesce(p_rank, v_member.rank);

  IF v_rank IS DISTINCT FROM v_member.rank OR v_roles IS DISTINCT FROM v_member.roles THEN
    UPDATE public.profiles SET rank = v_rank, roles = v_roles WHERE id = p_member_id;
  END IF;
  INSERT INTO public.admin_audit (actor, actor_id, actor_label, action, member_id, before, after, reason)
  VALUES (CASE WHEN p_actor_id IS NULL THEN 'operator' ELSE 'member' END, p_actor_id,
          nullif(btrim(coalesce(p_operator, '')), ''), 'member.change', p_member_id,
          jsonb_build_object('rank', v_member.rank, 'roles', to_jsonb(v_member.roles)),
          jsonb_build_object('rank', v_rank, 'roles', to_jsonb(v_roles)), btrim(p_reason))
  RETURNING id INTO v_audit;
  SELECT id INTO v_job FROM nexus_private.livekit_access_jobs
   WHERE user_id = p_member_id AND room_name IS NULL AND status = 'pending';
  RETURN jsonb_build_object(
    'auditId', v_audit, 'userId', p_member_id, 'rank', v_rank, 'roles', to_jsonb(v_roles),
    'before', jsonb_build_object('rank', v_member.rank, 'roles', to_jsonb(v_member.roles)),
    'changed', v_rank IS DISTINCT FROM v_member.rank OR v_roles IS DISTINCT FROM v_member.roles,
    'accessJobId', v_job);
END
$$;

-- `nexus admin net create|set`: create a net or change its label/thresholds, audited.
CREATE OR REPLACE FUNCTION public.admin_net_upsert(
  p_actor_id uuid, p_operator text, p_code text, p_create boolean, p_label text, p_join text, p_rx text, p_tx text,
  p_reason text
) RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' AS $$
DECLARE
  v_refusal jsonb := nexus_private.admin_actor_refusal(p_actor_id, p_operator);
  v_before public.voice_nets%ROWTYPE;
  v_after public.voice_nets%ROWTYPE;
  v_audit bigint;
BEGIN
  IF v_refusal IS NOT NULL THEN
    RETURN v_refusal;
  END IF;
  IF EXISTS (SELECT 1 FROM unnest(ARRAY[p_join, p_rx, p_tx]) r WHERE r IS NOT NULL AND public.rank_level(r) IS NULL) THEN
    RETURN jsonb_build_object('error', 'BAD_REQUEST', 'field', 'rank', 'message', 'unknown rank');
  END IF;
  SELECT * INTO v_before FROM public.voice_nets WHERE code = p_code FOR UPDATE;
  IF p_create THEN
    IF FOUND THEN
      RETURN jsonb_build_object('error', 'NET_EXISTS');
    END IF;
    INSERT INTO public.voice_nets (code, label, min_rank_to_join, min_rank_to_rx, min_rank_to_tx)
    VALUES (p_code, coalesce(p_label, p_code), coalesce(p_join, 'vagrant'), coalesce(p_rx, 'vagrant'),
            coalesce(p_tx, 'scout'))
    RETURNING * INTO v_after;
  ELSE
    IF NOT FOUND THEN
      RETURN jsonb_build_object('error', 'NET_NOT_FOUND');
    END IF;
    UPDATE public.voice_nets SET label = coalesce(p_label, label),
      min_rank_to_join = coalesce(p_join, min_rank_to_join), min_rank_to_rx = coalesce(p_rx, min_rank_to_rx),
      min_rank_to_tx = coalesce(p_tx, min_rank_to_tx)
     WHERE id = v_before.id RETURNING * INTO v_after;
  END IF;
  INSERT INTO public.admin_audit (actor, actor_id, actor_label, action, subject, before, after, reason)
  VALUES (CASE WHEN p_actor_id IS NULL THEN 'operator' ELSE 'member' END, p_actor_id,
          nullif(btrim(coalesce(p_operator, '')), ''), CASE WHEN p_create THEN 'net.create' ELSE 'net.set' END,
          p_code, CASE WHEN p_create THEN NULL ELSE to_jsonb(v_before) END, to_jsonb(v_after),
          coalesce(nullif(btrim(coalesce(p_reason, '')), ''), 'nexus admin net'))
  RETURNING id INTO v_audit;
  RETURN jsonb_build_object('auditId', v_audit, 'net', to_jsonb(v_after));
END
$$;

-- `nexus admin skill add`: a skill by name (an existing one is answered as it is).
CREATE OR REPLACE FUNCTION public.admin_skill_add(p_actor_id uuid, p_operator text, p_name text, p_reason text)
RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' AS $$
DECLARE
  v_refusal jsonb := nexus_private.admin_actor_refusal(p_actor_id, p_operator);
  v_skill public.skills%ROWTYPE;
  v_audit bigint;
BEGIN
  IF v_refusal IS NOT NULL THEN
    RETURN v_refusal;
  END IF;
  INSERT INTO public.skills (name) VALUES (btrim(p_name)) ON CONFLICT (name) DO NOTHING RETURNING * INTO v_skill;
  IF NOT FOUND THEN
    SELECT * INTO v_skill FROM public.skills WHERE name = btrim(p_name);
    RETURN jsonb_build_object('created', false, 'skill', to_jsonb(v_skill));
  END IF;
  INSERT INTO public.admin_audit (actor, actor_id, actor_label, action, subject, after, reason)
  VALUES (CASE WHEN p_actor_id IS NULL THEN 'operator' ELSE 'member' END, p_actor_id,
          nullif(btrim(coalesce(p_operator, '')), ''), 'skill.add', v_skill.name, to_jsonb(v_skill),
          coalesce(nullif(btrim(coalesce(p_reason, '')), ''), 'nexus admin skill add'))
  RETURNING id INTO v_audit;
  RETURN jsonb_build_object('created', true, 'auditId', v_audit, 'skill', to_jsonb(v_skill));
END
$$;

-- `nexus admin certify`: certify a member as a guide for a skill (by name).
CREATE OR REPLACE FUNCTION public.admin_certify(
  p_actor_id uuid, p_operator text, p_member_id uuid, p_skill text, p_reason text
) RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' AS $$
DECLARE
  v_refusal jsonb := nexus_private.admin_actor_refusal(p_actor_id, p_operator);
  v_skill uuid;
  v_audit bigint;
BEGIN
  IF v_refusal IS NOT NULL THEN
    RETURN v_refusal;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM public.profiles WHERE id = p_member_id) THEN
    RETURN jsonb_build_object('error', 'MEMBER_NOT_FOUND');
  END IF;
  SELECT id INTO v_skill FROM public.skills WHERE name = btrim(p_skill);
  IF v_skill IS NULL THEN
    RETURN jsonb_build_object('error', 'SKILL_NOT_FOUND');
  END IF;
  INSERT INTO public.certifications (user_id, skill_id, certified_by) VALUES (p_member_id, v_skill, p_actor_id)
  ON CONFLICT (user_id, skill_id) DO NOTHING;
  IF NOT FOUND THEN
    RETURN jsonb_build_object('created', false, 'skillId', v_skill);
  END IF;
  INSERT INTO public.admin_audit (actor, actor_id, actor_label, action, member_id, subject, after, reason)
  VALUES (CASE WHEN p_actor_id IS NULL THEN 'operator' ELSE 'member' END, p_actor_id,
          nullif(btrim(coalesce(p_operator, '')), ''), 'certify', p_member_id, btrim(p_skill),
          jsonb_build_object('skillId', v_skill), coalesce(nullif(btrim(coalesce(p_reason, '')), ''), 'nexus admin certify'))
  RETURNING id INTO v_audit;
  RETURN jsonb_build_object('created', true, 'auditId', v_audit, 'skillId', v_skill);
END
$$;

-- The access sync, step 1: recover expired leases, then lease due jobs (or
-- exactly p_job_ids: the endpoint's and the webhook's inline pass) with SKIP
-- LOCKED. Each job comes with the rooms to look at: its room, or every room
-- where voice_presence has its member open.
CREATE OR REPLACE FUNCTION public.livekit_access_jobs_claim(
  p_worker text, p_limit integer DEFAULT 50, p_lease_seconds integer DEFAULT 60, p_job_ids jsonb DEFAULT NULL
) RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' AS $$
DECLARE
  v_jobs jsonb;
BEGIN
  -- A lease that ran out: back to pending, unless a newer pending job took its place.
  DELETE FROM nexus_private.livekit_access_jobs j
   WHERE j.status = 'processing' AND j.locked_at < now() - make_interval(secs => p_lease_seconds)
     AND EXISTS (SELECT 1 FROM nexus_private.livekit_access_jobs o WHERE o.status = 'pending'
                  AND o.user_id IS NOT DISTINCT FROM j.user_id AND o.room_name IS NOT DISTINCT FROM j.room_name);
  -- Two ran out for one target (two workers died holding one member's jobs): only the newest
  -- comes back, since one pending job per target is all the unique index allows.
  DELETE FROM nexus_private.livekit_access_jobs j
   WHERE j.status = 'processing' AND j.locked_at < now() - make_interval(secs => p_lease_seconds)
     AND EXISTS (SELECT 1 FROM nexus_private.livekit_access_jobs o
                  WHERE o.status = 'processing' AND o.locked_at < now() - make_interval(secs => p_lease_seconds)
                    AND o.id > j.id
                    AND o.user_id IS NOT DISTINCT FROM j.user_id AND o.room_name IS NOT DISTINCT FROM j.room_name);
  UPDATE nexus_private.livekit_access_jobs
     SET status = 'pending', locked_at = NULL, locked_by = NULL, next_run_at = now(),
         last_error = 'lease expired', updated_at = now()
   WHERE status = 'processing' AND locked_at < now() - make_interval(secs => p_lease_seconds);

  WITH due AS (
    SELECT id FROM nexus_private.livekit_access_jobs
     WHERE status = 'pending' AND (CASE WHEN p_job_ids IS NULL THEN next_run_at <= now() ELSE id IN (SELECT jsonb_array_elements_text(p_job_ids)::bigint) END)
     ORDER BY next_run_at, id
     LIMIT greatest(p_limit, 0)
     FOR UPDATE SKIP LOCKED
  ), claimed AS (
    UPDATE nexus_private.livekit_access_jobs j
       SET status = 'processing', locked_at = now(), locked_by = p_worker, attempt = j.attempt + 1,
           updated_at = now()
      FROM due WHERE j.id = due.id
    RETURNING j.id, j.user_id, j.room_name, j.attempt
  )
  SELECT coalesce(jsonb_agg(jsonb_build_object(
    'id', c.id, 'userId', c.user_id, 'room', c.room_name, 'attempt', c.attempt,
    'rooms', CASE WHEN c.room_name IS NOT NULL THEN jsonb_build_array(c.room_name)
      ELSE (SELECT coalesce(jsonb_agg(DISTINCT vp.room_name), '[]'::jsonb) FROM public.voice_presence vp
             WHERE vp.user_id = c.user_id AND vp.left_at IS NULL) END) ORDER BY c.id), '[]'::jsonb)
    INTO v_jobs FROM claimed c;
  RETURN jsonb_build_object('jobs', v_jobs);
END
$$;

-- Step 2: current rights for the (member, room) pairs LiveKit listed.
-- p_pairs: [{"userId": uuid, "room": text}, ...]
CREATE OR REPLACE FUNCTION public.livekit_access_rights(p_pairs jsonb) RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = '' AS $$
  SELECT coalesce(jsonb_agg(public.voice_rights((p ->> 'userId')::uuid, p ->> 'room')), '[]'::jsonb)
  FROM jsonb_array_elements(p_pairs) p
$$;

-- Step 3: report. Done jobs are deleted; failed ones go back to pending with
-- exponential backoff (capped: LiveKit being down never makes a job give up).
-- Only the worker holding the lease may report a job.
CREATE OR REPLACE FUNCTION public.livekit_access_jobs_report(
  p_worker text, p_done jsonb, p_failed jsonb, p_error text DEFAULT NULL,
  p_retry_base_seconds integer DEFAULT 5, p_retry_cap_seconds integer DEFAULT 60
) RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' AS $$
DECLARE
  v_done integer;
  v_failed integer;
BEGIN
  DELETE FROM nexus_private.livekit_access_jobs
   WHERE id IN (SELECT jsonb_array_elements_text(coalesce(p_done, '[]'))::bigint) AND status = 'processing' AND locked_by = p_worker;
  GET DIAGNOSTICS v_done = ROW_COUNT;
  -- a failed job whose target got a newer pending job meanwhile is folded into it
  DELETE FROM nexus_private.livekit_access_jobs j
   WHERE j.id IN (SELECT jsonb_array_elements_text(coalesce(p_failed, '[]'))::bigint) AND j.status = 'processing' AND j.locked_by = p_worker
     AND EXISTS (SELECT 1 FROM nexus_private.livekit_access_jobs o WHERE o.status = 'pending'
                  AND o.user_id IS NOT DISTINCT FROM j.user_id AND o.room_name IS NOT DISTINCT FROM j.room_name);
  UPDATE nexus_private.livekit_access_jobs
     SET status = 'pending', locked_at = NULL, locked_by = NULL, last_error = left(p_error, 500),
         next_run_at = now() + make_interval(secs => least(p_retry_cap_seconds,
                                p_retry_base_seconds * power(2, least(attempt - 1, 20)))),
         updated_at = now()
   WHERE id IN (SELECT jsonb_array_elements_text(coalesce(p_failed, '[]'))::bigint) AND status = 'processing' AND locked_by = p_worker;
  GET DIAGNOSTICS v_failed = ROW_COUNT;
  RETURN jsonb_build_object('done', v_done, 'failed', v_failed);
END
$$;

-- A participant_joined whose permission (in the event) exceeds the member's
-- current rights (a token minted before a brig or a demotion, refreshed by
-- LiveKit, or for a pod that has ended) queues a job for that member in that
-- room; the webhook applies it at once. Returns the job id, or NULL.
CREATE OR REPLACE FUNCTION nexus_private.livekit_access_join_check(p_event jsonb) RETURNS bigint
LANGUAGE plpgsql SET search_path = '' AS $$
DECLARE
  v_room text := nullif(p_event #>> '{room,name}', '');
  v_user uuid := nexus_private.lk_uuid(p_event #>> '{participant,identity}');
  v_perm jsonb := coalesce(p_event #> '{participant,permission}', '{}'::jsonb);
  v_rights jsonb;
  v_sources jsonb;
BEGIN
  -- only our members are judged (bots, egress and ids without a profile are not)
  IF p_event ->> 'event' IS DISTINCT FROM 'participant_joined' OR v_room IS NULL OR v_user IS NULL
     OR NOT EXISTS (SELECT 1 FROM public.profiles WHERE id = v_user) THEN
    RETURN NULL;
  END IF;
  v_rights := public.voice_rights(v_user, v_room);
  v_sources := coalesce(v_perm -> 'canPublishSources', v_perm -> 'can_publish_sources', '[]'::jsonb);
  IF NOT (v_rights ->> 'canJoin')::boolean
     OR (coalesce(v_perm ->> 'canSubscribe', v_perm ->> 'can_subscribe') = 'true'
         AND NOT (v_rights ->> 'canSubscribe')::boolean)
     OR (coalesce(v_perm ->> 'canPublish', v_perm ->> 'can_publish') = 'true'
         AND (NOT (v_rights ->> 'canPublish')::boolean
              OR jsonb_typeof(v_sources) <> 'array' OR jsonb_array_length(v_sources) = 0
              OR EXISTS (SELECT 1 FROM jsonb_array_elements_text(v_sources) s
                          WHERE upper(s) NOT IN ('MICROPHONE', '2'))))
     OR (coalesce(v_perm ->> 'canPublishData', v_perm ->> 'can_publish_data') = 'true'
         AND NOT (v_rights ->> 'canPublishData')::boolean) THEN
    RETURN nexus_private.livekit_access_enqueue(v_user, v_room, 'join');
  END IF;
  RETURN NULL;
END
$$;

-- The webhook's one round trip (20251211000100), now also checking a join
-- against current rights in the same transaction: `accessJobId` in the answer
-- tells the webhook to bring LiveKit in line before it returns.
CREATE OR REPLACE FUNCTION public.livekit_webhook_ingest(
  p_event_id text, p_payload text, p_created_at bigint DEFAULT NULL,
  p_max_attempts integer DEFAULT 8, p_retry_base_seconds integer DEFAULT 5, p_retry_cap_seconds integer DEFAULT 3600
) RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' AS $$
DECLARE
  v_payload jsonb := p_payload::jsonb;
  v_at timestamptz := coalesce(to_timestamp(p_created_at), now());
  v_id bigint;
  v_outcome text;
  v_msg text;
  v_state text;
  v_access bigint;
BEGIN
  INSERT INTO nexus_private.livekit_webhook_jobs
    (event_id, event_type, room_name, payload, event_created_at, status, attempt, max_attempts, done_at)
  VALUES (p_event_id, v_payload ->> 'event',
    coalesce(nullif(v_payload #>> '{room,name}', ''), nullif(v_payload #>> '{egressInfo,roomName}', '')),
    v_payload, v_at, 'done', 1, p_max_attempts, now())
  ON CONFLICT (event_id) DO NOTHING
  RETURNING id INTO v_id;
  IF v_id IS NULL THEN
    RETURN jsonb_build_object('status', 'duplicate');
  END IF;
  v_access := nexus_private.livekit_access_join_check(v_payload);
  BEGIN
    v_outcome := nexus_private.livekit_apply_event(v_payload, v_at);
  EXCEPTION WHEN others THEN
    GET STACKED DIAGNOSTICS v_msg = MESSAGE_TEXT, v_state = RETURNED_SQLSTATE;
    PERFORM nexus_private.livekit_job_failed(v_id, 'webhook', v_state, v_msg,
                                             p_retry_base_seconds, p_retry_cap_seconds);
    RETURN jsonb_strip_nulls(jsonb_build_object('status', 'queued', 'jobId', v_id, 'accessJobId', v_access));
  END;
  RETURN jsonb_strip_nulls(jsonb_build_object('status', v_outcome, 'jobId', v_id, 'accessJobId', v_access));
END
$$;

REVOKE ALL ON FUNCTION public.voice_rights(uuid, text) FROM PUBLIC, anon, authenticated;
REVOKE ALL ON FUNCTION nexus_private.livekit_access_enqueue(uuid, text, text) FROM PUBLIC, anon, authenticated;
REVOKE ALL ON FUNCTION nexus_private.profiles_queue_livekit_access() FROM PUBLIC, anon, authenticated;
REVOKE ALL ON FUNCTION nexus_private.voice_nets_queue_livekit_access() FROM PUBLIC, anon, authenticated;
REVOKE ALL ON FUNCTION nexus_private.admin_audit_append_only() FROM PUBLIC, anon, authenticated;
REVOKE ALL ON FUNCTION nexus_private.admin_actor_refusal(uuid, text) FROM PUBLIC, anon, authenticated;
REVOKE ALL ON FUNCTION nexus_private.livekit_access_join_check(jsonb) FROM PUBLIC, anon, authenticated;
REVOKE ALL ON FUNCTION public.member_admin_change(uuid, uuid, text, jsonb, jsonb, text, text) FROM PUBLIC, anon, authenticated;
REVOKE ALL ON FUNCTION public.admin_net_upsert(uuid, text, text, boolean, text, text, text, text, text) FROM PUBLIC, anon, authenticated;
REVOKE ALL ON FUNCTION public.admin_skill_add(uuid, text, text, text) FROM PUBLIC, anon, authenticated;
REVOKE ALL ON FUNCTION public.admin_certify(uuid, text, uuid, text, text) FROM PUBLIC, anon, authenticated;
REVOKE ALL ON FUNCTION public.livekit_access_jobs_claim(text, integer, integer, jsonb) FROM PUBLIC, anon, authenticated;
REVOKE ALL ON FUNCTION public.livekit_access_rights(jsonb) FROM PUBLIC, anon, authenticated;
REVOKE ALL ON FUNCTION public.livekit_access_jobs_report(text, jsonb, jsonb, text, integer, integer) FROM PUBLIC, anon, authenticated;
REVOKE ALL ON FUNCTION public.livekit_webhook_ingest(text, text, bigint, integer, integer, integer) FROM PUBLIC, anon, authenticated;
GRANT EXECUTE ON FUNCTION public.canonical_role(text) TO service_role;
GRANT EXECUTE ON FUNCTION public.voice_rights(uuid, text) TO service_role;
GRANT EXECUTE ON FUNCTION public.member_admin_change(uuid, uuid, text, jsonb, jsonb, text, text) TO service_role;
GRANT EXECUTE ON FUNCTION public.admin_net_upsert(uuid, text, text, boolean, text, text, text, text, text) TO service_role;
GRANT EXECUTE ON FUNCTION public.admin_skill_add(uuid, text, text, text) TO service_role;
GRANT EXECUTE ON FUNCTION public.admin_certify(uuid, text, uuid, text, text) TO service_role;
GRANT EXECUTE ON FUNCTION public.livekit_access_jobs_claim(text, integer, integer, jsonb) TO service_role;
GRANT EXECUTE ON FUNCTION public.livekit_access_rights(jsonb) TO service_role;
GRANT EXECUTE ON FUNCTION public.livekit_access_jobs_report(text, jsonb, jsonb, text, integer, integer) TO service_role;
GRANT EXECUTE ON FUNCTION public.livekit_webhook_ingest(text, text, bigint, integer, integer, integer) TO service_role;
