-- A rescue flare reads roles in any spelling (issue 25, found while attacking it).
--
-- Roles are stored canonically by a trigger (20251221000100), but rows written with triggers off
-- (a restore, the owner with session_replication_role = replica) keep what was written, and
-- voice_rights, livekit-token and member-admin read a brig in any spelling
-- (nexus_private.is_brigged). The flare's fan-out did not: a medic stored as ['Medic', 'Brig']
-- was still called. Redefines public.launch_rescue_flare (last in
-- 20251219900100_legacy_callsigns_push_functions.sql), otherwise unchanged: responders are
-- Rescue or Medic in any spelling, and nobody brigged in any spelling.
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
      AND EXISTS (SELECT 1 FROM unnest(p.roles) r WHERE public.canonical_role(r) IN ('Rescue', 'Medic'))
      AND NOT nexus_private.is_brigged(p.roles)
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

REVOKE ALL ON FUNCTION public.launch_rescue_flare(uuid, text, text, integer) FROM PUBLIC, anon, authenticated;
GRANT EXECUTE ON FUNCTION public.launch_rescue_flare(uuid, text, text, integer) TO service_role;
