-- Presence reconciler, fairness (replaces the versions in
-- 20251211000100_livekit_webhook_functions.sql; signatures unchanged).
--
-- Before: candidates were served oldest first, so room rows whose
-- room_finished was lost (often days old) came before every room with stale
-- presence, and once p_limit of them existed nothing else was ever asked
-- about. Now the rooms asked least recently come first (never asked: first of
-- all), rooms with open presence before bare room rows, then the oldest.
CREATE OR REPLACE FUNCTION public.livekit_presence_stale_rooms(
  p_older_than_seconds integer, p_limit integer DEFAULT 500
) RETURNS jsonb LANGUAGE sql STABLE SECURITY DEFINER SET search_path = '' AS $$
  SELECT coalesce(jsonb_agg(jsonb_build_object('room', room_name, 'open', open_count, 'since', since)
                            ORDER BY checked_at NULLS FIRST, open_count = 0, since, room_name), '[]'::jsonb)
  FROM (
    SELECT c.room_name, c.open_count, c.since, k.checked_at FROM (
      SELECT vp.room_name, count(*) AS open_count, min(vp.joined_at) AS since
        FROM public.voice_presence vp
       WHERE vp.left_at IS NULL
       GROUP BY vp.room_name
      HAVING min(vp.joined_at) < now() - make_interval(secs => p_older_than_seconds)
      UNION ALL
      SELECT r.room_name, 0, r.last_event_at
        FROM public.livekit_rooms r
       WHERE r.finished_at IS NULL AND r.last_event_at < now() - make_interval(secs => p_older_than_seconds)
         AND NOT EXISTS (SELECT 1 FROM public.voice_presence vp
                          WHERE vp.room_name = r.room_name AND vp.left_at IS NULL)
    ) c
    LEFT JOIN nexus_private.livekit_reconcile_checks k ON k.room_name = c.room_name
    ORDER BY k.checked_at NULLS FIRST, c.open_count = 0, c.since, c.room_name
    LIMIT p_limit
  ) picked
$$;

-- As before (see 20251211000100), and it records that the room was asked
-- about, answered or not, while anything of the room is still open; a room
-- with nothing open left drops out of the rotation.
CREATE OR REPLACE FUNCTION public.livekit_presence_reconcile(
  p_room text, p_checked_at timestamptz, p_present_sids jsonb DEFAULT NULL,
  p_room_gone boolean DEFAULT false, p_max_age_seconds integer DEFAULT NULL
) RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' AS $$
DECLARE
  v_before timestamptz := p_checked_at - interval '30 seconds';
  v_closed integer := 0;
  v_finished integer := 0;
BEGIN
  IF p_room_gone THEN
    UPDATE public.voice_presence
       SET left_at = greatest(joined_at, p_checked_at), left_reason = 'room_not_found', updated_at = now()
     WHERE room_name = p_room AND left_at IS NULL AND joined_at < v_before;
    GET DIAGNOSTICS v_closed = ROW_COUNT;
    UPDATE public.livekit_rooms
       SET finished_at = p_checked_at, finished_reason = 'room_not_found', updated_at = now()
     WHERE room_name = p_room AND finished_at IS NULL AND last_event_at < v_before;
    GET DIAGNOSTICS v_finished = ROW_COUNT;
  ELSIF p_present_sids IS NOT NULL THEN
    UPDATE public.voice_presence
       SET left_at = greatest(joined_at, p_checked_at), left_reason = 'absent_in_livekit', updated_at = now()
     WHERE room_name = p_room AND left_at IS NULL AND joined_at < v_before
       AND NOT (p_present_sids ? participant_sid);
    GET DIAGNOSTICS v_closed = ROW_COUNT;
  ELSIF p_max_age_seconds IS NOT NULL THEN
    UPDATE public.voice_presence
       SET left_at = greatest(joined_at, p_checked_at), left_reason = 'max_age_exceeded', updated_at = now()
     WHERE room_name = p_room AND left_at IS NULL
       AND joined_at < p_checked_at - make_interval(secs => p_max_age_seconds);
    GET DIAGNOSTICS v_closed = ROW_COUNT;
  END IF;

  IF EXISTS (SELECT 1 FROM public.voice_presence WHERE room_name = p_room AND left_at IS NULL)
     OR EXISTS (SELECT 1 FROM public.livekit_rooms WHERE room_name = p_room AND finished_at IS NULL) THEN
    INSERT INTO nexus_private.livekit_reconcile_checks AS k (room_name, checked_at)
    VALUES (p_room, p_checked_at)
    ON CONFLICT (room_name) DO UPDATE SET checked_at = greatest(k.checked_at, excluded.checked_at);
  ELSE
    DELETE FROM nexus_private.livekit_reconcile_checks WHERE room_name = p_room;
  END IF;
  RETURN jsonb_build_object('closed', v_closed, 'roomFinished', v_finished > 0);
END
$$;

-- As before (see 20251211000100), and it forgets reconciler checks of rooms
-- that closed by other means (a webhook) and were not asked about since.
CREATE OR REPLACE FUNCTION public.livekit_webhook_jobs_purge(
  p_done_older_than_hours integer DEFAULT 72, p_dead_older_than_days integer DEFAULT 30,
  p_presence_older_than_days integer DEFAULT 30, p_limit integer DEFAULT 10000
) RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' AS $$
DECLARE
  v_done integer;
  v_dead integer;
  v_presence integer;
BEGIN
  DELETE FROM nexus_private.livekit_webhook_jobs WHERE id IN (
    SELECT id FROM nexus_private.livekit_webhook_jobs
     WHERE status = 'done' AND done_at < now() - make_interval(hours => p_done_older_than_hours)
     ORDER BY done_at LIMIT p_limit);
  GET DIAGNOSTICS v_done = ROW_COUNT;
  DELETE FROM nexus_private.livekit_webhook_jobs WHERE id IN (
    SELECT id FROM nexus_private.livekit_webhook_jobs
     WHERE status = 'dead' AND updated_at < now() - make_interval(days => p_dead_older_than_days)
     LIMIT p_limit);
  GET DIAGNOSTICS v_dead = ROW_COUNT;
  DELETE FROM public.voice_presence WHERE id IN (
    SELECT id FROM public.voice_presence
     WHERE left_at < now() - make_interval(days => p_presence_older_than_days)
     LIMIT p_limit);
  GET DIAGNOSTICS v_presence = ROW_COUNT;
  DELETE FROM nexus_private.livekit_room_incarnations WHERE (room_name, room_sid) IN (
    SELECT room_name, room_sid FROM nexus_private.livekit_room_incarnations
     WHERE finished_at < now() - make_interval(days => p_presence_older_than_days)
     LIMIT p_limit);
  -- a room still open is asked about within a few runs, so a check this old
  -- belongs to a room with nothing open (losing it only moves a room forward)
  DELETE FROM nexus_private.livekit_reconcile_checks WHERE room_name IN (
    SELECT room_name FROM nexus_private.livekit_reconcile_checks
     WHERE checked_at < now() - make_interval(days => 1)
     LIMIT p_limit);
  RETURN jsonb_build_object('done', v_done, 'dead', v_dead, 'presence', v_presence);
END
$$;

-- CREATE OR REPLACE keeps the grants and revokes of 20251211000100; restated
-- so this file stands on its own.
REVOKE ALL ON FUNCTION public.livekit_presence_stale_rooms(integer, integer) FROM PUBLIC, anon, authenticated;
REVOKE ALL ON FUNCTION public.livekit_presence_reconcile(text, timestamptz, jsonb, boolean, integer)
  FROM PUBLIC, anon, authenticated;
REVOKE ALL ON FUNCTION public.livekit_webhook_jobs_purge(integer, integer, integer, integer)
  FROM PUBLIC, anon, authenticated;
GRANT EXECUTE ON FUNCTION public.livekit_presence_stale_rooms(integer, integer) TO service_role;
GRANT EXECUTE ON FUNCTION public.livekit_presence_reconcile(text, timestamptz, jsonb, boolean, integer) TO service_role;
GRANT EXECUTE ON FUNCTION public.livekit_webhook_jobs_purge(integer, integer, integer, integer) TO service_role;
