-- Retry worker's claim (replaces the version in 20251211000100; signature
-- unchanged): a job whose stale lock is recovered on its last attempt goes
-- dead here, not in livekit_webhook_job_run, so the claim now says how many
-- (`recoveredDead`) and the worker counts them in WebhookJobsDead. Every
-- claim records the attempt's time in last_attempt_at.
CREATE OR REPLACE FUNCTION public.livekit_webhook_jobs_claim(
  p_worker text, p_limit integer DEFAULT 100, p_visibility_seconds integer DEFAULT 120
) RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' AS $$
DECLARE
  v_recovered integer;
  v_dead integer;
  v_ids jsonb;
BEGIN
  WITH stale AS (
    SELECT id FROM nexus_private.livekit_webhook_jobs
     WHERE status = 'processing' AND locked_at < now() - make_interval(secs => p_visibility_seconds)
     FOR UPDATE SKIP LOCKED
  ), recovered AS (
    UPDATE nexus_private.livekit_webhook_jobs j
       SET status = CASE WHEN j.attempt >= j.max_attempts THEN 'dead' ELSE 'pending' END,
           next_run_at = now(), locked_at = NULL, locked_by = NULL,
           last_error = 'lock expired: worker ' || coalesce(j.locked_by, '?') || ' did not finish',
           error_history = j.error_history || jsonb_build_array(jsonb_build_object(
             'at', now(), 'attempt', j.attempt, 'worker', j.locked_by, 'sqlstate', NULL,
             'error', 'lock expired after ' || p_visibility_seconds || ' s')),
           updated_at = now()
      FROM stale WHERE j.id = stale.id
    RETURNING j.status
  )
  SELECT count(*), count(*) FILTER (WHERE status = 'dead') INTO v_recovered, v_dead FROM recovered;

  WITH due AS (
    SELECT id FROM nexus_private.livekit_webhook_jobs
     WHERE status = 'pending' AND next_run_at <= now()
     ORDER BY next_run_at, id
     LIMIT greatest(p_limit, 0)
     FOR UPDATE SKIP LOCKED
  ), claimed AS (
    UPDATE nexus_private.livekit_webhook_jobs j
       SET status = 'processing', locked_at = now(), locked_by = p_worker,
           attempt = j.attempt + 1, last_attempt_at = now(), updated_at = now()
      FROM due WHERE j.id = due.id
    RETURNING j.id, j.event_created_at
  )
  SELECT coalesce(jsonb_agg(id ORDER BY event_created_at, id), '[]'::jsonb) INTO v_ids FROM claimed;

  RETURN jsonb_build_object('jobs', v_ids, 'recovered', v_recovered, 'recoveredDead', v_dead);
END
$$;

REVOKE ALL ON FUNCTION public.livekit_webhook_jobs_claim(text, integer, integer) FROM PUBLIC, anon, authenticated;
GRANT EXECUTE ON FUNCTION public.livekit_webhook_jobs_claim(text, integer, integer) TO service_role;
