-- Pushes name their sender (rescue flares) or guide (academy accepts) by
-- callsign. Callsigns written before the text rules stay as they are, so,
-- as academy_request_create already does (20251216000200), these leave out
-- one that breaks the rules ('A member', 'A guide'), in the text and the
-- payload. Otherwise unchanged from 20251210000200 and 20251212000100.
CREATE OR REPLACE FUNCTION public.launch_rescue_flare(
  p_user_id uuid, p_flare_type text, p_location text, p_window_seconds integer
) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' AS $$
DECLARE
  v_rank text;
  v_callsign text;
  v_last timestamptz;
  v_retry integer;
  v_flare uuid;
  v_ids uuid[];
  v_devices integer;
BEGIN
  SELECT rank, callsign INTO v_rank, v_callsign
  FROM public.profiles WHERE id = p_user_id FOR UPDATE;
  IF NOT FOUND THEN
    RETURN jsonb_build_object('error', 'NO_PROFILE');
  END IF;
  -- A callsign from before the text rules (20251216) that breaks them is not shown.
  IF NOT public.text_is_shown_plainly(v_callsign) THEN
    v_callsign := NULL;
  END IF;
  IF public.rank_level(v_rank) < public.rank_level('scout') THEN
    RETURN jsonb_build_object('error', 'INSUFFICIENT_CLEARANCE', 'rank', v_rank, 'required', 'scout');
  END IF;

  SELECT max(created_at) INTO v_last FROM public.flares WHERE sender_id = p_user_id;
  IF v_last IS NOT NULL AND v_last > now() - make_interval(secs => p_window_seconds) THEN
    v_retry := greatest(1, ceil(extract(epoch FROM v_last + make_interval(secs => p_window_seconds) - now()))::integer);
    RETURN jsonb_build_object('error', 'RATE_LIMITED', 'retryAfter', v_retry);
  END IF;

  INSERT INTO public.flares (sender_id, flare_type, location)
  VALUES (p_user_id, p_flare_type, p_location)
  RETURNING id INTO v_flare;

  WITH queued AS (
    INSERT INTO public.notification_queue (recipient_id, type, title, message, payload, urgency)
    SELECT p.id,
           'RESCUE_FLARE',
           initcap(p_flare_type) || ' rescue flare',
           coalesce(v_callsign, 'A member') || ' needs ' || lower(p_flare_type) || ' assistance at ' || p_location,
           jsonb_build_object('flareId', v_flare, 'flareType', p_flare_type, 'location', p_location,
                              'senderId', p_user_id, 'senderCallsign', v_callsign),
           'high'
    FROM public.profiles p
    WHERE p.id <> p_user_id
      AND EXISTS (SELECT 1 FROM unnest(p.roles) r WHERE lower(r) IN ('rescue', 'medic'))
      AND NOT EXISTS (SELECT 1 FROM unnest(p.roles) r WHERE lower(r) = 'brigged')
    RETURNING id
  )
  SELECT coalesce(array_agg(id), '{}') INTO v_ids FROM queued;

  UPDATE public.flares SET responders_queued = cardinality(v_ids) WHERE id = v_flare;
  SELECT count(*) INTO v_devices FROM nexus_private.push_deliveries WHERE notification_id = ANY (v_ids);

  RETURN jsonb_build_object(
    'flareId', v_flare,
    'respondersQueued', cardinality(v_ids),
    'devicesQueued', v_devices,
    'notificationIds', to_jsonb(v_ids));
END
$$;

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
