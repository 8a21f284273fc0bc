-- Sim-pod rooms are deleted after the pod ends however it ended, and once
-- more after every token that could re-create the room has lapsed.

-- Ends a live pod once: closes the room's open presence, completes the
-- request, and makes the room's delete due at once. False when it had
-- already ended.
CREATE OR REPLACE FUNCTION nexus_private.end_sim_pod(p_sim_pod_id text, p_reason text) RETURNS boolean
LANGUAGE plpgsql SET search_path = '' AS $$
DECLARE
  v_pod public.sim_pods%ROWTYPE;
BEGIN
  UPDATE public.sim_pods SET ended_at = now(), end_reason = p_reason, room_delete_due_at = now()
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

-- Expiry schedule, step 1: expire lapsed pending requests, list the live
-- pods past their expiry (oldest first) and the ended pods whose room is due
-- for a delete. Rooms are deleted through LiveKit before anything is
-- recorded, so each stays due until that worked.
CREATE OR REPLACE FUNCTION public.academy_expiry_sweep(p_max_age_seconds integer, p_limit integer) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' AS $$
DECLARE
  v_expired integer;
  v_due jsonb;
  v_rooms jsonb;
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

  SELECT coalesce(jsonb_agg(jsonb_build_object('simPodId', d.id, 'roomName', d.room_name,
                                               'endReason', d.end_reason) ORDER BY d.room_delete_due_at), '[]'::jsonb)
  INTO v_rooms
  FROM (SELECT p.id, p.room_name, p.end_reason, p.room_delete_due_at FROM public.sim_pods p
        WHERE p.room_delete_due_at <= now()
        ORDER BY p.room_delete_due_at LIMIT greatest(p_limit, 0)) d;

  RETURN jsonb_build_object('requestsExpired', v_expired, 'duePods', v_due, 'dueRooms', v_rooms);
END
$$;

-- Expiry schedule, step 2 for an ended pod: LiveKit confirmed its room gone.
-- A token minted before the pod ended (or one LiveKit refreshed for a member
-- still connected then) can re-create the room for p_recheck_seconds after
-- the end, so one more delete is due then; a delete after that is the last.
CREATE OR REPLACE FUNCTION public.sim_pod_room_deleted(p_sim_pod_id text, p_recheck_seconds integer) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' AS $$
DECLARE
  v_next timestamptz;
BEGIN
  UPDATE public.sim_pods p
  SET room_deleted_at = now(),
      room_delete_due_at = CASE
        WHEN p.ended_at + make_interval(secs => greatest(p_recheck_seconds, 0)) > now()
        THEN p.ended_at + make_interval(secs => greatest(p_recheck_seconds, 0))
      END
  WHERE p.id = p_sim_pod_id AND p.ended_at IS NOT NULL
  RETURNING p.room_delete_due_at INTO v_next;
  IF NOT FOUND THEN
    RETURN jsonb_build_object('recorded', false);
  END IF;
  RETURN jsonb_build_object('recorded', true, 'nextDeleteAt', v_next);
END
$$;

REVOKE ALL ON FUNCTION nexus_private.end_sim_pod(text, text) FROM PUBLIC, anon, authenticated;
REVOKE ALL ON FUNCTION public.academy_expiry_sweep(integer, integer) FROM PUBLIC, anon, authenticated;
REVOKE ALL ON FUNCTION public.sim_pod_room_deleted(text, integer) FROM PUBLIC, anon, authenticated;
GRANT EXECUTE ON FUNCTION public.academy_expiry_sweep(integer, integer) TO service_role;
GRANT EXECUTE ON FUNCTION public.sim_pod_room_deleted(text, integer) TO service_role;
