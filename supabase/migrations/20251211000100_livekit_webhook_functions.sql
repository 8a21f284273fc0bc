-- LiveKit webhook pipeline: applying an event (one function), ingesting it
-- durably, the retry worker's claim/run/purge, and the reconciler's state
-- changes. Python calls the public ones by name; each is one round trip.

-- Epoch values as LiveKit's protojson sends them: int64 as a string (or a
-- number), in seconds, milliseconds or nanoseconds. 0/absent/garbage -> NULL.
CREATE OR REPLACE FUNCTION nexus_private.lk_time(p_value jsonb, p_units_per_second numeric)
RETURNS timestamptz LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE SET search_path = '' AS $$
DECLARE
  v text := p_value #>> '{}';
BEGIN
  IF v IS NULL OR v !~ '^[0-9]{1,20}$' THEN
    RETURN NULL;
  END IF;
  -- beyond the year 5000 is garbage, and to_timestamp would raise
  IF v::numeric = 0 OR v::numeric / p_units_per_second > 95617584000 THEN
    RETURN NULL;
  END IF;
  RETURN to_timestamp((v::numeric / p_units_per_second)::double precision);
END
$$;

-- A participant's metadata string, parsed; not-JSON metadata is kept as {"raw": ...}.
CREATE OR REPLACE FUNCTION nexus_private.lk_metadata(p_text text)
RETURNS jsonb LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE SET search_path = '' AS $$
DECLARE
  v jsonb;
BEGIN
  IF p_text IS NULL OR p_text = '' THEN
    RETURN '{}'::jsonb;
  END IF;
  IF left(ltrim(p_text), 1) = '{' THEN
    BEGIN
      v := p_text::jsonb;
      IF jsonb_typeof(v) = 'object' THEN
        RETURN v;
      END IF;
    EXCEPTION WHEN others THEN
      NULL;
    END;
  END IF;
  RETURN jsonb_build_object('raw', left(p_text, 4096));
END
$$;

CREATE OR REPLACE FUNCTION nexus_private.lk_uuid(p_text text)
RETURNS uuid LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = '' AS $$
  SELECT CASE WHEN p_text ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' THEN p_text::uuid END
$$;

-- Egress progress: a terminal status is never replaced by a running one.
CREATE OR REPLACE FUNCTION nexus_private.lk_egress_rank(p_status text)
RETURNS integer LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = '' AS $$
  SELECT CASE p_status
    WHEN 'EGRESS_STARTING' THEN 0
    WHEN 'EGRESS_ACTIVE' THEN 1
    WHEN 'EGRESS_ENDING' THEN 2
    ELSE 3
  END
$$;

-- Apply one LiveKit webhook event. The whole event semantics live here.
--
-- p_at is the event's createdAt. The rules are chosen so that any delivery
-- order, with any duplicates, ends in the same rows:
-- * A participant sid is one session, keyed (room_name, participant_sid).
--   participant_left / participant_connection_aborted close that sid only,
--   and a close is final: a join arriving after its own leave stays closed,
--   a leave arriving first creates the closed row.
-- * LiveKit's leave is authoritative (the earliest one wins). Every other close
--   is inferred, an upper bound on when the session ended, and the earliest
--   inference wins until LiveKit's leave replaces it:
--   - LiveKit keeps one session per identity per room incarnation
--     (DUPLICATE_IDENTITY): a session ends no later than the next session of
--     its identity began, even if LiveKit's leave for it was dropped;
--   - a session ends no later than its room incarnation (room sid) finished,
--     whether room_finished arrives before or after the join.
-- * Fields both join and leave carry (name, metadata) come from the newest
--   event by createdAt; joined_at is the earliest reported.
-- * livekit_rooms follows the newest incarnation of a name by createdAt;
--   nexus_private.livekit_room_incarnations remembers each incarnation.
-- * Egress events upsert livekit_recordings: the newest egress updatedAt
--   wins, and a terminal status is never replaced by a running one.
-- * Any other event type is acknowledged and ignored.
-- Returns 'applied' or 'ignored'; raises SQLSTATE 22023 on a malformed event.
-- lock_timeout: a webhook waits at most 2 s for a busy row, then its event is
-- left to the retry worker (still acknowledged: it is stored).
CREATE OR REPLACE FUNCTION nexus_private.livekit_apply_event(p_event jsonb, p_at timestamptz)
RETURNS text LANGUAGE plpgsql SET search_path = '' SET lock_timeout = '2s' AS $$
DECLARE
  c_livekit_said CONSTANT text[] := ARRAY['participant_left', 'connection_aborted'];
  v_type text := p_event ->> 'event';
  v_room text := nullif(p_event #>> '{room,name}', '');
  v_room_sid text := nullif(p_event #>> '{room,sid}', '');
  v_p jsonb := p_event -> 'participant';
  v_sid text;
  v_identity text;
  v_name text;
  v_meta jsonb;
  v_joined timestamptz;
  v_reason text;
  v_next timestamptz;
  v_started timestamptz;
  v_finished timestamptz;
  v_e jsonb;
  v_egress text;
  v_status text;
  v_order timestamptz;
BEGIN
  IF v_type IS NULL OR p_at IS NULL THEN
    RAISE EXCEPTION 'webhook event needs a type and a time' USING ERRCODE = '22023';
  END IF;

  -- participants -------------------------------------------------------------
  IF v_type IN ('participant_joined', 'participant_left', 'participant_connection_aborted') THEN
    v_sid := nullif(v_p ->> 'sid', '');
    v_identity := nullif(v_p ->> 'identity', '');
    IF v_room IS NULL OR v_sid IS NULL OR v_identity IS NULL THEN
      RAISE EXCEPTION '% needs room.name, participant.sid and participant.identity', v_type
        USING ERRCODE = '22023';
    END IF;
    -- One event per room at a time: the rules read other rows of the room
    -- (sessions of the identity, the incarnation), which concurrent events
    -- could change unseen under READ COMMITTED.
    PERFORM pg_advisory_xact_lock(7411, hashtext(v_room));
    v_name := nullif(v_p ->> 'name', '');
    v_meta := nexus_private.lk_metadata(v_p ->> 'metadata');
    v_joined := coalesce(nexus_private.lk_time(v_p -> 'joinedAtMs', 1000),
                         nexus_private.lk_time(v_p -> 'joinedAt', 1), p_at);

    IF v_type = 'participant_joined' THEN
      INSERT INTO public.voice_presence AS vp (room_name, room_sid, participant_identity, participant_sid,
        participant_name, participant_metadata, user_id, joined_at, last_event_at)
      VALUES (v_room, v_room_sid, v_identity, v_sid, v_name, v_meta,
        coalesce(nexus_private.lk_uuid(v_meta ->> 'userId'), nexus_private.lk_uuid(v_identity)), v_joined, p_at)
      ON CONFLICT ON CONSTRAINT voice_presence_session_key DO UPDATE SET
        room_sid = coalesce(vp.room_sid, EXCLUDED.room_sid),
        joined_at = least(vp.joined_at, EXCLUDED.joined_at),
        -- a join and a leave in the same second: the leave is the newer
        participant_name = CASE WHEN EXCLUDED.last_event_at > vp.last_event_at
          THEN coalesce(EXCLUDED.participant_name, vp.participant_name)
          ELSE coalesce(vp.participant_name, EXCLUDED.participant_name) END,
        participant_metadata = CASE WHEN vp.participant_metadata = '{}'::jsonb
            OR (EXCLUDED.last_event_at > vp.last_event_at AND EXCLUDED.participant_metadata <> '{}'::jsonb)
          THEN EXCLUDED.participant_metadata ELSE vp.participant_metadata END,
        user_id = coalesce(vp.user_id, EXCLUDED.user_id),
        last_event_at = greatest(vp.last_event_at, EXCLUDED.last_event_at),
        updated_at = now()
      WHERE EXCLUDED.last_event_at > vp.last_event_at OR EXCLUDED.joined_at < vp.joined_at
        OR (vp.room_sid IS NULL AND EXCLUDED.room_sid IS NOT NULL)
        OR (vp.participant_metadata = '{}'::jsonb AND EXCLUDED.participant_metadata <> '{}'::jsonb)
        OR (vp.participant_name IS NULL AND EXCLUDED.participant_name IS NOT NULL)
        OR (vp.user_id IS NULL AND EXCLUDED.user_id IS NOT NULL);

      -- Joined an incarnation that has since finished: ended no later than that.
      IF v_room_sid IS NOT NULL THEN
        SELECT finished_at INTO v_finished
          FROM nexus_private.livekit_room_incarnations WHERE room_name = v_room AND room_sid = v_room_sid;
        IF v_finished IS NOT NULL THEN
          UPDATE public.voice_presence
             SET left_at = greatest(joined_at, v_finished), left_reason = 'room_finished', updated_at = now()
           WHERE room_name = v_room AND participant_sid = v_sid
             AND (left_at IS NULL OR (left_reason <> ALL (c_livekit_said)
                                      AND left_at > greatest(joined_at, v_finished)));
        END IF;
      END IF;

      -- A later session of this identity in this incarnation: ended no later than it began.
      SELECT min(joined_at) INTO v_next FROM public.voice_presence
       WHERE room_name = v_room AND participant_identity = v_identity AND participant_sid <> v_sid
         AND (room_sid IS NULL OR v_room_sid IS NULL OR room_sid = v_room_sid)
         AND (joined_at > v_joined OR (joined_at = v_joined AND participant_sid > v_sid));
      IF v_next IS NOT NULL THEN
        UPDATE public.voice_presence
           SET left_at = greatest(joined_at, v_next), left_reason = 'duplicate_identity', updated_at = now()
         WHERE room_name = v_room AND participant_sid = v_sid
           AND (left_at IS NULL OR (left_reason <> ALL (c_livekit_said) AND left_at > greatest(joined_at, v_next)));
      END IF;
    ELSE
      v_reason := CASE v_type WHEN 'participant_left' THEN 'participant_left' ELSE 'connection_aborted' END;
      INSERT INTO public.voice_presence AS vp (room_name, room_sid, participant_identity, participant_sid,
        participant_name, participant_metadata, user_id, joined_at, left_at, left_reason, disconnect_reason,
        last_event_at)
      VALUES (v_room, v_room_sid, v_identity, v_sid, v_name, v_meta,
        coalesce(nexus_private.lk_uuid(v_meta ->> 'userId'), nexus_private.lk_uuid(v_identity)),
        v_joined, greatest(p_at, v_joined), v_reason, nullif(v_p ->> 'disconnectReason', ''), p_at)
      ON CONFLICT ON CONSTRAINT voice_presence_session_key DO UPDATE SET
        room_sid = coalesce(vp.room_sid, EXCLUDED.room_sid),
        joined_at = least(vp.joined_at, EXCLUDED.joined_at),
        left_at = CASE WHEN vp.left_reason = ANY (c_livekit_said)
          THEN least(vp.left_at, EXCLUDED.left_at) ELSE EXCLUDED.left_at END,
        left_reason = CASE WHEN vp.left_reason = ANY (c_livekit_said) AND vp.left_at <= EXCLUDED.left_at
          THEN vp.left_reason ELSE EXCLUDED.left_reason END,
        disconnect_reason = CASE WHEN vp.left_reason = ANY (c_livekit_said) AND vp.left_at <= EXCLUDED.left_at
          THEN vp.disconnect_reason ELSE EXCLUDED.disconnect_reason END,
        participant_name = CASE WHEN EXCLUDED.last_event_at >= vp.last_event_at
          THEN coalesce(EXCLUDED.participant_name, vp.participant_name)
          ELSE coalesce(vp.participant_name, EXCLUDED.participant_name) END,
        participant_metadata = CASE WHEN vp.participant_metadata = '{}'::jsonb
            OR (EXCLUDED.last_event_at >= vp.last_event_at AND EXCLUDED.participant_metadata <> '{}'::jsonb)
          THEN EXCLUDED.participant_metadata ELSE vp.participant_metadata END,
        user_id = coalesce(vp.user_id, EXCLUDED.user_id),
        last_event_at = greatest(vp.last_event_at, EXCLUDED.last_event_at),
        updated_at = now()
      WHERE vp.left_reason IS NULL OR vp.left_reason <> ALL (c_livekit_said)
        OR EXCLUDED.left_at < vp.left_at OR EXCLUDED.last_event_at >= vp.last_event_at
        OR EXCLUDED.joined_at < vp.joined_at
        OR (vp.room_sid IS NULL AND EXCLUDED.room_sid IS NOT NULL)
        OR (vp.participant_metadata = '{}'::jsonb AND EXCLUDED.participant_metadata <> '{}'::jsonb)
        OR (vp.participant_name IS NULL AND EXCLUDED.participant_name IS NOT NULL)
        OR (vp.user_id IS NULL AND EXCLUDED.user_id IS NOT NULL);
    END IF;

    -- This session began: earlier sessions of the identity in this incarnation had ended.
    UPDATE public.voice_presence
       SET left_at = greatest(joined_at, v_joined), left_reason = 'duplicate_identity', updated_at = now()
     WHERE room_name = v_room AND participant_identity = v_identity AND participant_sid <> v_sid
       AND (room_sid IS NULL OR v_room_sid IS NULL OR room_sid = v_room_sid)
       AND (joined_at < v_joined OR (joined_at = v_joined AND participant_sid < v_sid))
       AND (left_at IS NULL OR (left_reason <> ALL (c_livekit_said) AND left_at > greatest(joined_at, v_joined)));
    RETURN 'applied';
  END IF;

  -- rooms --------------------------------------------------------------------
  IF v_type IN ('room_started', 'room_finished') THEN
    IF v_room IS NULL OR v_room_sid IS NULL THEN
      RAISE EXCEPTION '% needs room.name and room.sid', v_type USING ERRCODE = '22023';
    END IF;
    PERFORM pg_advisory_xact_lock(7411, hashtext(v_room));
    v_started := coalesce(nexus_private.lk_time(p_event #> '{room,creationTimeMs}', 1000),
                          nexus_private.lk_time(p_event #> '{room,creationTime}', 1),
                          CASE WHEN v_type = 'room_started' THEN p_at END);
    v_finished := CASE WHEN v_type = 'room_finished' THEN p_at END;

    INSERT INTO nexus_private.livekit_room_incarnations AS i (room_sid, room_name, started_at, finished_at,
      last_event_at)
    VALUES (v_room_sid, v_room, v_started, v_finished, p_at)
    ON CONFLICT (room_name, room_sid) DO UPDATE SET
      started_at = coalesce(i.started_at, EXCLUDED.started_at),
      finished_at = least(i.finished_at, EXCLUDED.finished_at),
      last_event_at = greatest(i.last_event_at, EXCLUDED.last_event_at)
    WHERE (i.started_at IS NULL AND EXCLUDED.started_at IS NOT NULL)
       OR (EXCLUDED.finished_at IS NOT NULL AND (i.finished_at IS NULL OR EXCLUDED.finished_at < i.finished_at));

    IF v_type = 'room_started' THEN
      INSERT INTO public.livekit_rooms AS r (room_name, room_sid, started_at, last_event_at)
      VALUES (v_room, v_room_sid, v_started, p_at)
      ON CONFLICT (room_name) DO UPDATE SET
        room_sid = EXCLUDED.room_sid, started_at = EXCLUDED.started_at, finished_at = NULL,
        finished_reason = NULL, end_reason = NULL, last_event_at = EXCLUDED.last_event_at, updated_at = now()
      WHERE r.room_sid <> EXCLUDED.room_sid
        AND (EXCLUDED.last_event_at > r.last_event_at
             OR (EXCLUDED.last_event_at = r.last_event_at AND r.finished_at IS NOT NULL));
      UPDATE public.livekit_rooms SET started_at = v_started, updated_at = now()
       WHERE room_name = v_room AND room_sid = v_room_sid AND started_at IS NULL;
    ELSE
      INSERT INTO public.livekit_rooms AS r (room_name, room_sid, started_at, finished_at, finished_reason,
        end_reason, last_event_at)
      VALUES (v_room, v_room_sid, v_started, p_at, 'room_finished', nullif(p_event ->> 'roomEndReason', ''), p_at)
      ON CONFLICT (room_name) DO UPDATE SET
        room_sid = EXCLUDED.room_sid,
        started_at = CASE WHEN r.room_sid = EXCLUDED.room_sid THEN coalesce(r.started_at, EXCLUDED.started_at)
                          ELSE EXCLUDED.started_at END,
        finished_at = EXCLUDED.finished_at, finished_reason = EXCLUDED.finished_reason,
        end_reason = EXCLUDED.end_reason,
        last_event_at = greatest(r.last_event_at, EXCLUDED.last_event_at), updated_at = now()
      WHERE (r.room_sid = EXCLUDED.room_sid AND r.finished_at IS NULL)
         OR (r.room_sid <> EXCLUDED.room_sid AND EXCLUDED.last_event_at > r.last_event_at);
      -- every session of this incarnation ended no later than now
      UPDATE public.voice_presence
         SET left_at = greatest(joined_at, p_at), left_reason = 'room_finished', updated_at = now()
       WHERE room_name = v_room AND room_sid = v_room_sid
         AND (left_at IS NULL OR (left_reason <> ALL (c_livekit_said) AND left_at > greatest(joined_at, p_at)));
      -- sessions stored without a room sid: those that joined before the end
      UPDATE public.voice_presence
         SET left_at = greatest(joined_at, p_at), left_reason = 'room_finished', updated_at = now()
       WHERE room_name = v_room AND room_sid IS NULL AND left_at IS NULL AND joined_at < p_at;
    END IF;
    RETURN 'applied';
  END IF;

  -- egress (recordings) ------------------------------------------------------
  IF v_type IN ('egress_started', 'egress_updated', 'egress_ended') THEN
    v_e := p_event -> 'egressInfo';
    v_egress := nullif(v_e ->> 'egressId', '');
    IF v_egress IS NULL THEN
      RAISE EXCEPTION '% needs egressInfo.egressId', v_type USING ERRCODE = '22023';
    END IF;
    -- protojson omits the zero enum value (EGRESS_STARTING); numbers are accepted too
    v_status := CASE WHEN jsonb_typeof(v_e -> 'status') = 'number'
      THEN coalesce((ARRAY['EGRESS_STARTING', 'EGRESS_ACTIVE', 'EGRESS_ENDING', 'EGRESS_COMPLETE',
                           'EGRESS_FAILED', 'EGRESS_ABORTED', 'EGRESS_LIMIT_REACHED'])[(v_e ->> 'status')::int + 1],
                    'EGRESS_UNKNOWN')
      ELSE coalesce(nullif(v_e ->> 'status', ''), 'EGRESS_STARTING') END;
    v_order := coalesce(nexus_private.lk_time(v_e -> 'updatedAt', 1000000000), p_at);
    INSERT INTO public.livekit_recordings AS r (egress_id, room_name, room_sid, status, started_at, ended_at,
      error, info, last_event_at)
    VALUES (v_egress, coalesce(nullif(v_e ->> 'roomName', ''), v_room), nullif(v_e ->> 'roomId', ''), v_status,
      nexus_private.lk_time(v_e -> 'startedAt', 1000000000), nexus_private.lk_time(v_e -> 'endedAt', 1000000000),
      nullif(v_e ->> 'error', ''), v_e, v_order)
    ON CONFLICT (egress_id) DO UPDATE SET
      room_name = coalesce(EXCLUDED.room_name, r.room_name), room_sid = coalesce(EXCLUDED.room_sid, r.room_sid),
      status = EXCLUDED.status, started_at = coalesce(r.started_at, EXCLUDED.started_at),
      ended_at = coalesce(EXCLUDED.ended_at, r.ended_at), error = coalesce(EXCLUDED.error, r.error),
      info = EXCLUDED.info, last_event_at = greatest(r.last_event_at, EXCLUDED.last_event_at), updated_at = now()
    WHERE nexus_private.lk_egress_rank(r.status) < 3
      AND (nexus_private.lk_egress_rank(EXCLUDED.status) = 3
           OR EXCLUDED.last_event_at > r.last_event_at
           OR (EXCLUDED.last_event_at = r.last_event_at
               AND nexus_private.lk_egress_rank(EXCLUDED.status) > nexus_private.lk_egress_rank(r.status)));
    RETURN 'applied';
  END IF;

  RETURN 'ignored';
END
$$;

-- A failed attempt: back off exponentially with jitter, or go dead after the
-- last attempt. Every failure is appended to error_history.
CREATE OR REPLACE FUNCTION nexus_private.livekit_job_failed(
  p_job_id bigint, p_worker text, p_sqlstate text, p_error text,
  p_retry_base_seconds integer, p_retry_cap_seconds integer
) RETURNS text LANGUAGE sql SET search_path = '' AS $$
  UPDATE nexus_private.livekit_webhook_jobs
     SET status = CASE WHEN attempt >= max_attempts THEN 'dead' ELSE 'pending' END,
         -- "equal jitter": half the capped exponential delay, plus up to as much again
         next_run_at = now() + make_interval(secs => least(p_retry_cap_seconds::double precision,
                           p_retry_base_seconds * power(2::double precision, greatest(attempt - 1, 0)))
                         * (0.5 + random() * 0.5)),
         locked_at = NULL, locked_by = NULL, done_at = NULL,
         last_error = left(p_error, 2000),
         error_history = error_history || jsonb_build_array(jsonb_build_object(
           'at', now(), 'attempt', attempt, 'worker', p_worker, 'sqlstate', p_sqlstate,
           'error', left(p_error, 500))),
         updated_at = now()
   WHERE id = p_job_id
  RETURNING status
$$;

-- The webhook's one round trip: store the event (deduplicated by its id) and
-- apply it in the same transaction. If applying fails the event stays stored
-- as a pending job for the retry worker; either way the delivery is durable
-- once this returns. status: applied | ignored | duplicate | queued.
-- p_payload is the body as text, parsed here: both transports pass it as is.
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
  BEGIN
    v_outcome := nexus_private.livekit_apply_event(v_payload, v_at);
  EXCEPTION WHEN others THEN
    GET STACKED DIAGNOSTICS v_msg = MESSAGE_TEXT, v_state = RETURNED_SQLSTATE;
    PERFORM nexus_private.livekit_job_failed(v_id, 'webhook', v_state, v_msg,
                                             p_retry_base_seconds, p_retry_cap_seconds);
    RETURN jsonb_build_object('status', 'queued', 'jobId', v_id);
  END;
  RETURN jsonb_build_object('status', v_outcome, 'jobId', v_id);
END
$$;

-- Retry worker, step 1: return jobs whose lock outlived the visibility timeout
-- to pending (or dead, if that was their last attempt), then claim up to
-- p_limit due jobs for p_worker. SKIP LOCKED lets any number of workers claim
-- side by side; the attempt counter moves at claim time, so a job that kills
-- its worker still runs out of attempts.
CREATE OR REPLACE FUNCTION public.livekit_webhook_jobs_claim(
  p_worker text, p_limit integer DEFAULT 100, p_visibility_seconds integer DEFAULT 120
) RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' AS $$
DECLARE
  v_recovered integer;
  v_ids jsonb;
BEGIN
  WITH stale AS (
    SELECT id FROM nexus_private.livekit_webhook_jobs
     WHERE status = 'processing' AND locked_at < now() - make_interval(secs => p_visibility_seconds)
     FOR UPDATE SKIP LOCKED
  )
  UPDATE nexus_private.livekit_webhook_jobs j
     SET status = CASE WHEN j.attempt >= j.max_attempts THEN 'dead' ELSE 'pending' END,
         next_run_at = now(), locked_at = NULL, locked_by = NULL,
         last_error = 'lock expired: worker ' || coalesce(j.locked_by, '?') || ' did not finish',
         error_history = j.error_history || jsonb_build_array(jsonb_build_object(
           'at', now(), 'attempt', j.attempt, 'worker', j.locked_by, 'sqlstate', NULL,
           'error', 'lock expired after ' || p_visibility_seconds || ' s')),
         updated_at = now()
    FROM stale WHERE j.id = stale.id;
  GET DIAGNOSTICS v_recovered = ROW_COUNT;

  WITH due AS (
    SELECT id FROM nexus_private.livekit_webhook_jobs
     WHERE status = 'pending' AND next_run_at <= now()
     ORDER BY next_run_at, id
     LIMIT greatest(p_limit, 0)
     FOR UPDATE SKIP LOCKED
  ), claimed AS (
    UPDATE nexus_private.livekit_webhook_jobs j
       SET status = 'processing', locked_at = now(), locked_by = p_worker,
           attempt = j.attempt + 1, updated_at = now()
      FROM due WHERE j.id = due.id
    RETURNING j.id, j.event_created_at
  )
  SELECT coalesce(jsonb_agg(id ORDER BY event_created_at, id), '[]'::jsonb) INTO v_ids FROM claimed;

  RETURN jsonb_build_object('jobs', v_ids, 'recovered', v_recovered);
END
$$;

-- Retry worker, step 2: run one claimed job. Only the worker holding the lock
-- may run it (a lock recovered and re-claimed elsewhere makes this a no-op:
-- 'lost'), and applying plus marking done is one transaction, so no job is
-- ever applied twice. status: done | pending | dead | lost.
CREATE OR REPLACE FUNCTION public.livekit_webhook_job_run(
  p_job_id bigint, p_worker text, p_retry_base_seconds integer DEFAULT 5, p_retry_cap_seconds integer DEFAULT 3600
) RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' AS $$
DECLARE
  v_job nexus_private.livekit_webhook_jobs%ROWTYPE;
  v_outcome text;
  v_msg text;
  v_state text;
BEGIN
  SELECT * INTO v_job FROM nexus_private.livekit_webhook_jobs WHERE id = p_job_id FOR UPDATE;
  IF NOT FOUND OR v_job.status <> 'processing' OR v_job.locked_by IS DISTINCT FROM p_worker THEN
    RETURN jsonb_build_object('status', 'lost');
  END IF;
  BEGIN
    v_outcome := nexus_private.livekit_apply_event(v_job.payload, v_job.event_created_at);
  EXCEPTION WHEN others THEN
    GET STACKED DIAGNOSTICS v_msg = MESSAGE_TEXT, v_state = RETURNED_SQLSTATE;
    RETURN jsonb_build_object('status', nexus_private.livekit_job_failed(
      p_job_id, p_worker, v_state, v_msg, p_retry_base_seconds, p_retry_cap_seconds), 'error', v_msg);
  END;
  UPDATE nexus_private.livekit_webhook_jobs
     SET status = 'done', done_at = now(), locked_at = NULL, locked_by = NULL, updated_at = now()
   WHERE id = p_job_id;
  RETURN jsonb_build_object('status', 'done', 'outcome', v_outcome);
END
$$;

-- Retry worker, step 3: bounded clean-up. Done jobs are kept long enough to
-- deduplicate any redelivery (LiveKit gives up within minutes); dead jobs,
-- closed presence and finished room incarnations are history, kept for days.
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
  RETURN jsonb_build_object('done', v_done, 'dead', v_dead, 'presence', v_presence);
END
$$;

-- Reconciler, step 1: rooms worth asking LiveKit about: open presence that
-- joined longer ago than the threshold, or a room row never finished whose
-- last event is that old.
CREATE OR REPLACE FUNCTION public.livekit_presence_stale_rooms(
  p_older_than_seconds integer, p_limit integer DEFAULT 500
) RETURNS jsonb LANGUAGE sql STABLE SECURITY DEFINER SET search_path = '' AS $$
  SELECT coalesce(jsonb_agg(jsonb_build_object('room', room_name, 'open', open_count, 'since', since)
                            ORDER BY since), '[]'::jsonb)
  FROM (
    SELECT room_name, open_count, since FROM (
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
    ) candidates
    ORDER BY since
    LIMIT p_limit
  ) picked
$$;

-- Reconciler, step 2: act on what LiveKit said about one room, asked at
-- p_checked_at. Only sessions that joined 30 s before the question are judged
-- (a join racing the question is not in the answer; also absorbs clock skew).
--   p_room_gone:             LiveKit does not know the room: close all, finish the room.
--   p_present_sids (a JSON array of sids): close the sessions LiveKit does not list.
--   otherwise (no answer):   close only sessions older than p_max_age_seconds.
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
  RETURN jsonb_build_object('closed', v_closed, 'roomFinished', v_finished > 0);
END
$$;

REVOKE ALL ON FUNCTION nexus_private.lk_time(jsonb, numeric) FROM PUBLIC;
REVOKE ALL ON FUNCTION nexus_private.lk_metadata(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION nexus_private.lk_uuid(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION nexus_private.lk_egress_rank(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION nexus_private.livekit_apply_event(jsonb, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION nexus_private.livekit_job_failed(bigint, text, text, text, integer, integer) FROM PUBLIC;

REVOKE ALL ON FUNCTION public.livekit_webhook_ingest(text, text, bigint, integer, integer, integer)
  FROM PUBLIC, anon, authenticated;
REVOKE ALL ON FUNCTION public.livekit_webhook_jobs_claim(text, integer, integer) FROM PUBLIC, anon, authenticated;
REVOKE ALL ON FUNCTION public.livekit_webhook_job_run(bigint, text, integer, integer) FROM PUBLIC, anon, authenticated;
REVOKE ALL ON FUNCTION public.livekit_webhook_jobs_purge(integer, integer, integer, integer)
  FROM PUBLIC, anon, authenticated;
REVOKE ALL ON FUNCTION public.livekit_presence_stale_rooms(integer, integer) FROM PUBLIC, anon, authenticated;
REVOKE ALL ON FUNCTION public.livekit_presence_reconcile(text, timestamptz, jsonb, boolean, integer)
  FROM PUBLIC, anon, authenticated;

GRANT EXECUTE ON FUNCTION public.livekit_webhook_ingest(text, text, bigint, integer, integer, integer) TO service_role;
GRANT EXECUTE ON FUNCTION public.livekit_webhook_jobs_claim(text, integer, integer) TO service_role;
GRANT EXECUTE ON FUNCTION public.livekit_webhook_job_run(bigint, text, integer, integer) TO service_role;
GRANT EXECUTE ON FUNCTION public.livekit_webhook_jobs_purge(integer, integer, integer, integer) TO service_role;
GRANT EXECUTE ON FUNCTION public.livekit_presence_stale_rooms(integer, integer) TO service_role;
GRANT EXECUTE ON FUNCTION public.livekit_presence_reconcile(text, timestamptz, jsonb, boolean, integer) TO service_role;
