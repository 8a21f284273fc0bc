-- Functions and triggers for net bridges, the academy and sim pods. Each
-- request is one of these calls: one round trip, atomic, and a refusal
-- returns {"error": ...} having written nothing.

CREATE OR REPLACE FUNCTION nexus_private.is_brigged(p_roles text[]) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = '' AS $$
  SELECT EXISTS (SELECT 1 FROM unnest(coalesce(p_roles, '{}')) r WHERE lower(r) = 'brigged')
$$;

-- net-bridge: founder+ links or unlinks two nets. A bridge is an unordered
-- pair, so link answers the existing bridge whichever way round the nets are
-- given, and unlink removes it in either order.
CREATE OR REPLACE FUNCTION public.net_bridge(
  p_user_id uuid, p_source_net_id uuid, p_target_net_id uuid, p_action text
) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' AS $$
DECLARE
  v_rank text;
  v_roles text[];
  v_missing uuid[];
  v_row public.voice_net_bridges%ROWTYPE;
BEGIN
  SELECT rank, roles INTO v_rank, v_roles FROM public.profiles WHERE id = p_user_id;
  IF NOT FOUND THEN
    RETURN jsonb_build_object('error', 'NO_PROFILE');
  END IF;
  IF public.rank_level(v_rank) < public.rank_level('founder') THEN
    RETURN jsonb_build_object('error', 'INSUFFICIENT_CLEARANCE', 'rank', v_rank, 'required', 'founder');
  END IF;
  IF nexus_private.is_brigged(v_roles) THEN
    RETURN jsonb_build_object('error', 'BRIGGED');
  END IF;
  IF p_action IS NULL OR p_action NOT IN ('link', 'unlink') THEN
    RETURN jsonb_build_object('error', 'BAD_ACTION');
  END IF;
  IF p_source_net_id IS NULL OR p_target_net_id IS NULL OR p_source_net_id = p_target_net_id THEN
    RETURN jsonb_build_object('error', 'SAME_NET');
  END IF;

  SELECT array_agg(x ORDER BY ord) INTO v_missing
  FROM unnest(ARRAY[p_source_net_id, p_target_net_id]) WITH ORDINALITY AS u (x, ord)
  WHERE NOT EXISTS (SELECT 1 FROM public.voice_nets n WHERE n.id = u.x);
  IF v_missing IS NOT NULL THEN
    RETURN jsonb_build_object('error', 'NET_NOT_FOUND', 'missing', to_jsonb(v_missing));
  END IF;

  IF p_action = 'unlink' THEN
    DELETE FROM public.voice_net_bridges b
    WHERE least(b.source_net_id, b.target_net_id) = least(p_source_net_id, p_target_net_id)
      AND greatest(b.source_net_id, b.target_net_id) = greatest(p_source_net_id, p_target_net_id)
    RETURNING * INTO v_row;
    IF NOT FOUND THEN
      RETURN jsonb_build_object('error', 'BRIDGE_NOT_FOUND');
    END IF;
    RETURN jsonb_build_object('outcome', 'removed', 'bridge', to_jsonb(v_row));
  END IF;

  -- A concurrent unlink can remove the conflicting bridge between the insert
  -- and the read; then the insert is tried again.
  FOR attempt IN 1..3 LOOP
    BEGIN
      INSERT INTO public.voice_net_bridges (source_net_id, target_net_id, created_by)
      VALUES (p_source_net_id, p_target_net_id, p_user_id)
      ON CONFLICT ((least(source_net_id, target_net_id)), (greatest(source_net_id, target_net_id))) DO NOTHING
      RETURNING * INTO v_row;
    EXCEPTION WHEN foreign_key_violation THEN
      -- a net was deleted after the check above
      RETURN jsonb_build_object('error', 'NET_NOT_FOUND');
    END;
    IF FOUND THEN
      RETURN jsonb_build_object('outcome', 'created', 'bridge', to_jsonb(v_row));
    END IF;
    SELECT * INTO v_row FROM public.voice_net_bridges b
    WHERE least(b.source_net_id, b.target_net_id) = least(p_source_net_id, p_target_net_id)
      AND greatest(b.source_net_id, b.target_net_id) = greatest(p_source_net_id, p_target_net_id);
    IF FOUND THEN
      RETURN jsonb_build_object('outcome', 'existing', 'bridge', to_jsonb(v_row));
    END IF;
  END LOOP;
  RAISE EXCEPTION 'net_bridge: the bridge kept changing under concurrent link/unlink' USING ERRCODE = '40001';
END
$$;

-- academy-request: a member who is not brigged asks for a guide in a skill.
-- One open request per cadet and skill (the partial unique index settles
-- races); a pending request older than p_max_age_seconds no longer counts as
-- open. Every certified guide except the cadet (and anyone in the brig) gets
-- an ACADEMY_REQUEST notification.
CREATE OR REPLACE FUNCTION public.academy_request_create(
  p_user_id uuid, p_skill_id uuid, p_max_age_seconds integer
) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' AS $$
DECLARE
  v_roles text[];
  v_callsign text;
  v_skill text;
  v_id uuid;
  v_existing uuid;
  v_status text;
  v_notified integer;
BEGIN
  SELECT roles, callsign INTO v_roles, v_callsign FROM public.profiles WHERE id = p_user_id;
  IF NOT FOUND THEN
    RETURN jsonb_build_object('error', 'NO_PROFILE');
  END IF;
  IF nexus_private.is_brigged(v_roles) THEN
    RETURN jsonb_build_object('error', 'BRIGGED');
  END IF;
  SELECT name INTO v_skill FROM public.skills WHERE id = p_skill_id;
  IF NOT FOUND THEN
    RETURN jsonb_build_object('error', 'SKILL_NOT_FOUND');
  END IF;

  FOR attempt IN 1..3 LOOP
    -- A lapsed request the schedule has not expired yet must not block a new one.
    UPDATE public.instruction_requests
    SET status = 'EXPIRED', closed_at = now(), updated_at = now()
    WHERE cadet_id = p_user_id AND skill_id = p_skill_id AND status = 'PENDING'
      AND created_at <= now() - make_interval(secs => p_max_age_seconds);

    INSERT INTO public.instruction_requests (skill_id, cadet_id)
    VALUES (p_skill_id, p_user_id)
    ON CONFLICT (cadet_id, skill_id) WHERE status IN ('PENDING', 'ACCEPTED') DO NOTHING
    RETURNING id INTO v_id;
    EXIT WHEN v_id IS NOT NULL;

    SELECT id, status INTO v_existing, v_status FROM public.instruction_requests
    WHERE cadet_id = p_user_id AND skill_id = p_skill_id AND status IN ('PENDING', 'ACCEPTED');
    IF FOUND THEN
      RETURN jsonb_build_object('error', 'OPEN_REQUEST', 'requestId', v_existing, 'status', v_status);
    END IF;
  END LOOP;
  IF v_id IS NULL THEN
    RAISE EXCEPTION 'academy_request_create: open request kept changing' USING ERRCODE = '40001';
  END IF;

  INSERT INTO public.notification_queue (recipient_id, type, title, message, payload)
  SELECT c.user_id,
         'ACADEMY_REQUEST',
         'Training requested: ' || v_skill,
         coalesce(v_callsign, 'A cadet') || ' is looking for a guide in ' || v_skill || '.',
         jsonb_build_object('requestId', v_id, 'skillId', p_skill_id, 'skillName', v_skill,
                            'cadetId', p_user_id, 'cadetCallsign', v_callsign)
  FROM public.certifications c
  JOIN public.profiles p ON p.id = c.user_id
  WHERE c.skill_id = p_skill_id AND c.user_id <> p_user_id AND NOT nexus_private.is_brigged(p.roles);
  GET DIAGNOSTICS v_notified = ROW_COUNT;

  RETURN jsonb_build_object('requestId', v_id, 'status', 'PENDING', 'guidesNotified', v_notified);
END
$$;

-- academy-accept: a guide certified for the skill (not the cadet, not in the
-- brig) takes a PENDING request. The compare-and-set UPDATE is what makes
-- exactly one of any number of concurrent accepts win: the others wait on the
-- row lock, re-check `status = 'PENDING'` against the winner's committed row
-- and update nothing. The winner creates the sim pod (its id is its LiveKit
-- room) and notifies the cadet in the same transaction.
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
  SELECT rank, roles, callsign INTO v_rank, v_roles, v_callsign FROM public.profiles WHERE id = p_user_id;
  IF NOT FOUND THEN
    RETURN jsonb_build_object('error', 'NO_PROFILE');
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

-- Ends a live pod once: closes the room's open presence, completes the
-- request. False when it had already ended.
CREATE OR REPLACE FUNCTION nexus_private.end_sim_pod(p_sim_pod_id text, p_reason text) RETURNS boolean
LANGUAGE plpgsql SET search_path = '' AS $$
DECLARE
  v_pod public.sim_pods%ROWTYPE;
BEGIN
  UPDATE public.sim_pods SET ended_at = now(), end_reason = p_reason
  WHERE id = p_sim_pod_id AND ended_at IS NULL
  RETURNING * INTO v_pod;
  IF NOT FOUND THEN
    RETURN false;
  END IF;
  UPDATE public.voice_presence
  SET left_at = greatest(now(), joined_at), left_reason = 'sim_pod_' || lower(p_reason), updated_at = now()
  WHERE room_name = v_pod.room_name AND left_at IS NULL;
  UPDATE public.instruction_requests
  SET status = 'COMPLETED', closed_at = now(), updated_at = now()
  WHERE id = v_pod.request_id AND status = 'ACCEPTED';
  RETURN true;
END
$$;

-- Expiry schedule, step 1: expire lapsed pending requests and list the live
-- pods past their expiry (oldest first). The rooms are deleted through
-- LiveKit before each pod is ended, so a pod stays due until that worked.
CREATE OR REPLACE FUNCTION public.academy_expiry_sweep(p_max_age_seconds integer, p_limit integer) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' AS $$
DECLARE
  v_expired integer;
  v_due jsonb;
BEGIN
  UPDATE public.instruction_requests
  SET status = 'EXPIRED', closed_at = now(), updated_at = now()
  WHERE status = 'PENDING' AND created_at <= now() - make_interval(secs => p_max_age_seconds);
  GET DIAGNOSTICS v_expired = ROW_COUNT;

  SELECT coalesce(jsonb_agg(jsonb_build_object('simPodId', d.id, 'roomName', d.room_name,
                                               'expiresAt', d.expires_at) ORDER BY d.expires_at), '[]'::jsonb)
  INTO v_due
  FROM (SELECT p.id, p.room_name, p.expires_at FROM public.sim_pods p
        WHERE p.ended_at IS NULL AND p.expires_at <= now()
        ORDER BY p.expires_at LIMIT greatest(p_limit, 0)) d;

  RETURN jsonb_build_object('requestsExpired', v_expired, 'duePods', v_due);
END
$$;

-- Expiry schedule, step 2: after LiveKit confirmed the room is gone.
CREATE OR REPLACE FUNCTION public.sim_pod_end(p_sim_pod_id text, p_reason text) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' AS $$
BEGIN
  IF p_reason IS NULL OR p_reason NOT IN ('EXPIRED', 'ROOM_FINISHED', 'CANCELLED') THEN
    RAISE EXCEPTION 'sim_pod_end: unknown reason %', p_reason USING ERRCODE = '22023';
  END IF;
  RETURN jsonb_build_object('ended', nexus_private.end_sim_pod(p_sim_pod_id, p_reason));
END
$$;

-- LiveKit closed a pod's room (room_finished, or the reconciler found it
-- gone): the pod ends early. When the room closed because the schedule
-- deleted it, the pod is past expiry and ends as EXPIRED.
CREATE OR REPLACE FUNCTION nexus_private.livekit_room_finished_ends_sim_pod() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' AS $$
BEGIN
  IF TG_OP = 'UPDATE' AND OLD.finished_at IS NOT NULL THEN
    RETURN NULL;
  END IF;
  PERFORM nexus_private.end_sim_pod(p.id, CASE WHEN p.expires_at <= now() THEN 'EXPIRED' ELSE 'ROOM_FINISHED' END)
  FROM public.sim_pods p
  WHERE p.room_name = NEW.room_name AND p.ended_at IS NULL;
  RETURN NULL;
END
$$;

CREATE TRIGGER livekit_rooms_end_sim_pod
  AFTER INSERT OR UPDATE OF finished_at ON public.livekit_rooms
  FOR EACH ROW
  WHEN (NEW.finished_at IS NOT NULL AND NEW.room_name LIKE 'sim-pod-%')
  EXECUTE FUNCTION nexus_private.livekit_room_finished_ends_sim_pod();

CREATE TRIGGER instruction_requests_touch_updated_at
  BEFORE UPDATE ON public.instruction_requests
  FOR EACH ROW EXECUTE FUNCTION public.touch_updated_at();

-- livekit-token, extended: besides the caller's profile and the net, the
-- nets bridged to it (each with its own thresholds) and the sim pod whose
-- room this is, so the whole decision is still one round trip.
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
      SELECT jsonb_build_object('rank', p.rank, 'roles', to_jsonb(p.roles), 'callsign', p.callsign)
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

REVOKE ALL ON FUNCTION nexus_private.is_brigged(text[]) FROM PUBLIC, anon, authenticated;
REVOKE ALL ON FUNCTION nexus_private.end_sim_pod(text, text) FROM PUBLIC, anon, authenticated;
REVOKE ALL ON FUNCTION nexus_private.livekit_room_finished_ends_sim_pod() FROM PUBLIC, anon, authenticated;
REVOKE ALL ON FUNCTION public.net_bridge(uuid, uuid, uuid, text) FROM PUBLIC, anon, authenticated;
REVOKE ALL ON FUNCTION public.academy_request_create(uuid, uuid, integer) FROM PUBLIC, anon, authenticated;
REVOKE ALL ON FUNCTION public.academy_accept(uuid, uuid, integer, integer) FROM PUBLIC, anon, authenticated;
REVOKE ALL ON FUNCTION public.academy_expiry_sweep(integer, integer) FROM PUBLIC, anon, authenticated;
REVOKE ALL ON FUNCTION public.sim_pod_end(text, text) FROM PUBLIC, anon, authenticated;
REVOKE ALL ON FUNCTION public.livekit_token_context(uuid, text) FROM PUBLIC, anon, authenticated;
GRANT EXECUTE ON FUNCTION public.net_bridge(uuid, uuid, uuid, text) TO service_role;
GRANT EXECUTE ON FUNCTION public.academy_request_create(uuid, uuid, integer) TO service_role;
GRANT EXECUTE ON FUNCTION public.academy_accept(uuid, uuid, integer, integer) TO service_role;
GRANT EXECUTE ON FUNCTION public.academy_expiry_sweep(integer, integer) TO service_role;
GRANT EXECUTE ON FUNCTION public.sim_pod_end(text, text) TO service_role;
GRANT EXECUTE ON FUNCTION public.livekit_token_context(uuid, text) TO service_role;
