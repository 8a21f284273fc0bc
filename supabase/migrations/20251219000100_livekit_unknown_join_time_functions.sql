-- A leave or abort whose participant carries no join time closes its own session and nothing else.
--
-- livekit-server writes protojson, which omits zero values: a participant whose joinedAt and
-- joinedAtMs are 0 arrives without either. livekit_apply_event took such a leave as a session that
-- began at the leave's time, and its last rule ("this session began: earlier sessions of the
-- identity had ended") then closed the identity's newer, still open session as duplicate_identity.
--
-- The rules stay as they were, renamed livekit_apply_event_rules; livekit_apply_event now gives
-- such a leave the join time we already hold for its session (from its join), or, when we hold
-- none, a time before any session so that it closes nothing else, and then records the leave's
-- time as the session's start, as before. A join arriving later still lowers joined_at to the
-- real time (joined_at is the earliest reported).
ALTER FUNCTION nexus_private.livekit_apply_event(jsonb, timestamptz) RENAME TO livekit_apply_event_rules;

CREATE OR REPLACE FUNCTION nexus_private.livekit_apply_event(p_event jsonb, p_at timestamptz)
RETURNS text LANGUAGE plpgsql SET search_path = '' SET lock_timeout = '2s' AS $$
DECLARE
  -- before every real session: the rules close only sessions that began before the leave's session
  c_unknown CONSTANT timestamptz := '1970-01-01 00:00:00.001+00';
  v_room text := nullif(p_event #>> '{room,name}', '');
  v_sid text := nullif(p_event #>> '{participant,sid}', '');
  v_known timestamptz;
  v_outcome text;
BEGIN
  IF coalesce(p_event ->> 'event', '') NOT IN ('participant_left', 'participant_connection_aborted')
     OR v_room IS NULL OR v_sid IS NULL
     OR nexus_private.lk_time(p_event #> '{participant,joinedAtMs}', 1000) IS NOT NULL
     OR nexus_private.lk_time(p_event #> '{participant,joinedAt}', 1) IS NOT NULL THEN
    RETURN nexus_private.livekit_apply_event_rules(p_event, p_at);
  END IF;
  -- the rules take the same lock; taking it first keeps the session's row still while we read it
  PERFORM pg_advisory_xact_lock(7411, hashtext(v_room));
  SELECT joined_at INTO v_known FROM public.voice_presence WHERE room_name = v_room AND participant_sid = v_sid;
  v_outcome := nexus_private.livekit_apply_event_rules(
    jsonb_set(p_event, '{participant,joinedAtMs}',
              to_jsonb(round(extract(epoch FROM coalesce(v_known, c_unknown)) * 1000)::bigint::text)),
    p_at);
  IF v_known IS NULL THEN
    UPDATE public.voice_presence SET joined_at = left_at, updated_at = now()
     WHERE room_name = v_room AND participant_sid = v_sid AND joined_at = c_unknown;
  END IF;
  RETURN v_outcome;
END
$$;

REVOKE ALL ON FUNCTION nexus_private.livekit_apply_event(jsonb, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION nexus_private.livekit_apply_event_rules(jsonb, timestamptz) FROM PUBLIC;
