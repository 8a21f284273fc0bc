-- LiveKit converges to the database whatever the order of events (issue 25).
--
-- Replaces (same signatures): livekit_access_jobs_claim, livekit_access_jobs_report,
-- livekit_access_rights and nexus_private.livekit_access_join_check, all from
-- 20251218000100_member_admin_functions.sql. New: the rights versions
-- (nexus_private.livekit_rights_bump / livekit_rights_version and their
-- triggers) and public.livekit_presence_adopt (the reconciler's discovery).

-- Rights versions ---------------------------------------------------------------

CREATE OR REPLACE FUNCTION nexus_private.livekit_rights_bump(p_subject text) RETURNS void
LANGUAGE sql SET search_path = '' AS $$
  INSERT INTO nexus_private.livekit_rights_versions AS v (subject, version)
  VALUES (p_subject, nextval('nexus_private.livekit_rights_version_seq'))
  ON CONFLICT (subject) DO UPDATE SET version = excluded.version
$$;

-- The version of what a member may do in a room: the later of the member's and the room's.
CREATE OR REPLACE FUNCTION nexus_private.livekit_rights_version(p_user_id uuid, p_room text) RETURNS bigint
LANGUAGE sql STABLE SET search_path = '' AS $$
  SELECT greatest(
    coalesce((SELECT version FROM nexus_private.livekit_rights_versions WHERE subject = 'member:' || p_user_id::text), 0),
    coalesce((SELECT version FROM nexus_private.livekit_rights_versions WHERE subject = 'room:' || p_room), 0))
$$;

-- Beside the triggers that queue access jobs (20251218000100), which stay as they are.
CREATE OR REPLACE FUNCTION nexus_private.profiles_bump_livekit_rights() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' AS $$
BEGIN
  PERFORM nexus_private.livekit_rights_bump('member:' || (CASE WHEN TG_OP = 'DELETE' THEN OLD.id ELSE NEW.id END)::text);
  RETURN NULL;
END
$$;

CREATE TRIGGER profiles_bump_livekit_rights
  AFTER UPDATE OF rank, roles ON public.profiles
  FOR EACH ROW WHEN (OLD.rank IS DISTINCT FROM NEW.rank OR OLD.roles IS DISTINCT FROM NEW.roles)
  EXECUTE FUNCTION nexus_private.profiles_bump_livekit_rights();
CREATE TRIGGER profiles_created_or_deleted_bump_livekit_rights
  AFTER INSERT OR DELETE ON public.profiles
  FOR EACH ROW EXECUTE FUNCTION nexus_private.profiles_bump_livekit_rights();

-- A net's thresholds, code or existence; a pod's end or expiry: everyone in that room.
CREATE OR REPLACE FUNCTION nexus_private.rooms_bump_livekit_rights() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' AS $$
BEGIN
  IF TG_TABLE_NAME = 'voice_nets' THEN
    IF TG_OP <> 'INSERT' THEN
      PERFORM nexus_private.livekit_rights_bump('room:' || OLD.code);
    END IF;
    IF TG_OP <> 'DELETE' AND (TG_OP = 'INSERT' OR NEW.code <> OLD.code) THEN
      PERFORM nexus_private.livekit_rights_bump('room:' || NEW.code);
    END IF;
  ELSE
    PERFORM nexus_private.livekit_rights_bump('room:' || (CASE WHEN TG_OP = 'DELETE' THEN OLD.room_name ELSE NEW.room_name END));
  END IF;
  RETURN NULL;
END
$$;

CREATE TRIGGER voice_nets_bump_livekit_rights
  AFTER UPDATE OF min_rank_to_join, min_rank_to_rx, min_rank_to_tx, code ON public.voice_nets
  FOR EACH ROW WHEN (OLD.min_rank_to_join IS DISTINCT FROM NEW.min_rank_to_join
    OR OLD.min_rank_to_rx IS DISTINCT FROM NEW.min_rank_to_rx
    OR OLD.min_rank_to_tx IS DISTINCT FROM NEW.min_rank_to_tx
    OR OLD.code IS DISTINCT FROM NEW.code)
  EXECUTE FUNCTION nexus_private.rooms_bump_livekit_rights();
CREATE TRIGGER voice_nets_created_or_deleted_bump_livekit_rights
  AFTER INSERT OR DELETE ON public.voice_nets
  FOR EACH ROW EXECUTE FUNCTION nexus_private.rooms_bump_livekit_rights();
CREATE TRIGGER sim_pods_bump_livekit_rights
  AFTER UPDATE OF ended_at, expires_at ON public.sim_pods
  FOR EACH ROW WHEN (OLD.ended_at IS DISTINCT FROM NEW.ended_at OR OLD.expires_at IS DISTINCT FROM NEW.expires_at)
  EXECUTE FUNCTION nexus_private.rooms_bump_livekit_rights();
CREATE TRIGGER sim_pods_deleted_bump_livekit_rights
  AFTER DELETE ON public.sim_pods
  FOR EACH ROW EXECUTE FUNCTION nexus_private.rooms_bump_livekit_rights();

-- Step 1 of the access sync (replaces 20251218000100's).
-- * Expired leases come back one row at a time, newest first: a row whose
--   target already has a pending job (committed before we looked, or while we
--   waited on it: an enqueue committing between two statements) is folded into
--   it instead of breaking the one-pending index.
-- * A job is not claimed while another job for the same member (or, for a room
--   job, the same room) is processing: one member's rights are written by one
--   worker at a time. A join to judge is the exception: a session that may not
--   be there (a brigged member's old token) is removed at once, not after the
--   schedule. What two workers still race on (that, and a room job beside a
--   member job) the rights versions settle at report time.
-- * Each job comes with the rooms voice_presence has its member open in; the
--   worker adds every room LiveKit lists (shared/livekit_access.py), since a
--   join whose webhook was lost or is not committed yet has no row here.
CREATE OR REPLACE FUNCTION public.livekit_access_jobs_claim(
  p_worker text, p_limit integer DEFAULT 50, p_lease_seconds integer DEFAULT 60, p_job_ids jsonb DEFAULT NULL
) RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' AS $$
DECLARE
  v_jobs jsonb;
  v_expired bigint;
BEGIN
  FOR v_expired IN
    SELECT id FROM nexus_private.livekit_access_jobs
     WHERE status = 'processing' AND locked_at < now() - make_interval(secs => p_lease_seconds)
     ORDER BY id DESC
     FOR UPDATE SKIP LOCKED
  LOOP
    BEGIN
      UPDATE nexus_private.livekit_access_jobs
         SET status = 'pending', locked_at = NULL, locked_by = NULL, next_run_at = now(),
             last_error = 'lease expired', updated_at = now()
       WHERE id = v_expired;
    EXCEPTION WHEN unique_violation THEN
      DELETE FROM nexus_private.livekit_access_jobs WHERE id = v_expired;
    END;
  END LOOP;

  WITH due AS (
    SELECT j.id FROM nexus_private.livekit_access_jobs j
     WHERE j.status = 'pending'
       AND (CASE WHEN p_job_ids IS NULL THEN j.next_run_at <= now()
                 ELSE j.id IN (SELECT jsonb_array_elements_text(p_job_ids)::bigint) END)
       AND (j.cause = 'join'
            OR NOT EXISTS (SELECT 1 FROM nexus_private.livekit_access_jobs o
                            WHERE o.status = 'processing'
                              AND CASE WHEN j.user_id IS NOT NULL THEN o.user_id = j.user_id
                                       ELSE o.user_id IS NULL AND o.room_name = j.room_name END))
     ORDER BY j.next_run_at, j.id
     LIMIT greatest(p_limit, 0)
     FOR UPDATE OF j SKIP LOCKED
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

-- Step 2 (replaces 20251218000100's): current rights for the (member, room)
-- pairs LiveKit listed, each with its rights version, read in one snapshot.
-- p_pairs: [{"userId": uuid, "room": text}, ...]
CREATE OR REPLACE FUNCTION public.livekit_access_rights(p_pairs jsonb) RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = '' AS $$
  SELECT coalesce(jsonb_agg(public.voice_rights(x.u, x.r)
                            || jsonb_build_object('version', nexus_private.livekit_rights_version(x.u, x.r))
                            ORDER BY p.n), '[]'::jsonb)
  FROM jsonb_array_elements(p_pairs) WITH ORDINALITY AS p(e, n),
       LATERAL (SELECT (p.e ->> 'userId')::uuid AS u, p.e ->> 'room' AS r) x
$$;

-- Step 3 (replaces 20251218000100's). p_done holds job ids, or for a job that
-- changed LiveKit {"id": ..., "written": [{"userId", "room", "version"}, ...]}:
-- a written pair whose rights version moved since it was read may have been
-- given rights older than the database's, so a `recheck` job for that member
-- and room is queued (its ids are in the answer; the worker applies them).
-- Failed jobs back off as before; one whose target got a pending job meanwhile
-- (even one committing while we write) is folded into it.
CREATE OR REPLACE FUNCTION public.livekit_access_jobs_report(
  p_worker text, p_done jsonb, p_failed jsonb, p_error text DEFAULT NULL,
  p_retry_base_seconds integer DEFAULT 5, p_retry_cap_seconds integer DEFAULT 60
) RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' AS $$
DECLARE
  v_done bigint[];
  v_failed integer := 0;
  v_row bigint;
  v_stale record;
  v_recheck bigint[] := '{}';
BEGIN
  WITH done AS (
    DELETE FROM nexus_private.livekit_access_jobs
     WHERE id IN (SELECT CASE jsonb_typeof(e) WHEN 'object' THEN (e ->> 'id')::bigint ELSE (e #>> '{}')::bigint END
                    FROM jsonb_array_elements(coalesce(p_done, '[]')) e)
       AND status = 'processing' AND locked_by = p_worker
    RETURNING id)
  SELECT coalesce(array_agg(id ORDER BY id), '{}') INTO v_done FROM done;

  FOR v_stale IN
    SELECT DISTINCT (w ->> 'userId')::uuid AS user_id, w ->> 'room' AS room
      FROM jsonb_array_elements(coalesce(p_done, '[]')) e,
           jsonb_array_elements(CASE WHEN jsonb_typeof(e -> 'written') = 'array' THEN e -> 'written'
                                     ELSE '[]'::jsonb END) w
     WHERE nexus_private.livekit_rights_version((w ->> 'userId')::uuid, w ->> 'room')
           IS DISTINCT FROM (w ->> 'version')::bigint
  LOOP
    v_recheck := v_recheck || nexus_private.livekit_access_enqueue(v_stale.user_id, v_stale.room, 'recheck');
  END LOOP;

  FOR v_row IN
    SELECT id FROM nexus_private.livekit_access_jobs
     WHERE id IN (SELECT jsonb_array_elements_text(coalesce(p_failed, '[]'))::bigint)
       AND status = 'processing' AND locked_by = p_worker
     ORDER BY id FOR UPDATE
  LOOP
    BEGIN
      UPDATE nexus_private.livekit_access_jobs
         SET status = 'pending', locked_at = NULL, locked_by = NULL, last_error = left(p_error, 500),
             next_run_at = now() + make_interval(secs => least(p_retry_cap_seconds,
                                    p_retry_base_seconds * power(2, least(attempt - 1, 20)))),
             updated_at = now()
       WHERE id = v_row;
      v_failed := v_failed + 1;
    EXCEPTION WHEN unique_violation THEN
      DELETE FROM nexus_private.livekit_access_jobs WHERE id = v_row;
    END;
  END LOOP;
  RETURN jsonb_build_object('done', cardinality(v_done), 'doneIds', to_jsonb(v_done), 'failed', v_failed,
                            'recheck', to_jsonb(v_recheck));
END
$$;

-- A participant_joined is judged against current rights (replaces 20251218000100's):
-- * every identity that is a member id, with or without a profile: a deleted
--   member's kept token meets voice_rights' canJoin false and is removed
--   (bots and egress, whose identities are not uuids, are not judged);
-- * a job is queued when the permission LiveKit reports differs from the
--   rights in either direction: more (a token minted before a brig or a
--   demotion, refreshed by LiveKit, or for a pod that has ended) is taken away,
--   less (strict mode's tokens, LIVEKIT_PUBLISH_AFTER_JOIN_CHECK, or a token
--   minted before a promotion) is granted.
-- A field the permission lacks is false: livekit-server's protojson leaves out every false field.
-- Returns the job id, or NULL.
CREATE OR REPLACE FUNCTION nexus_private.livekit_access_join_check(p_event jsonb) RETURNS bigint
LANGUAGE plpgsql SET search_path = '' AS $$
DECLARE
  v_room text := nullif(p_event #>> '{room,name}', '');
  v_user uuid := nexus_private.lk_uuid(p_event #>> '{participant,identity}');
  v_perm jsonb := coalesce(p_event #> '{participant,permission}', '{}'::jsonb);
  v_rights jsonb;
  v_sources jsonb;
  v_sub boolean;
  v_pub boolean;
  v_data boolean;
  v_mic_only boolean;
BEGIN
  IF p_event ->> 'event' IS DISTINCT FROM 'participant_joined' OR v_room IS NULL OR v_user IS NULL THEN
    RETURN NULL;
  END IF;
  v_rights := public.voice_rights(v_user, v_room);
  v_sub := coalesce(v_perm ->> 'canSubscribe', v_perm ->> 'can_subscribe', 'false') = 'true';
  v_pub := coalesce(v_perm ->> 'canPublish', v_perm ->> 'can_publish', 'false') = 'true';
  v_data := coalesce(v_perm ->> 'canPublishData', v_perm ->> 'can_publish_data', 'false') = 'true';
  v_sources := coalesce(v_perm -> 'canPublishSources', v_perm -> 'can_publish_sources', '[]'::jsonb);
  v_mic_only := jsonb_typeof(v_sources) = 'array' AND jsonb_array_length(v_sources) > 0
    AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements_text(v_sources) s WHERE upper(s) NOT IN ('MICROPHONE', '2'));
  IF NOT (v_rights ->> 'canJoin')::boolean
     OR v_sub IS DISTINCT FROM (v_rights ->> 'canSubscribe')::boolean
     OR v_data IS DISTINCT FROM (v_rights ->> 'canPublishData')::boolean
     OR v_pub IS DISTINCT FROM (v_rights ->> 'canPublish')::boolean
     OR (v_pub AND NOT v_mic_only) THEN
    RETURN nexus_private.livekit_access_enqueue(v_user, v_room, 'join');
  END IF;
  RETURN NULL;
END
$$;

-- The presence reconciler's discovery: participants LiveKit lists that we hold
-- no row for (a participant_joined LiveKit never delivered, or one not applied
-- yet) are recorded as if their join had arrived now, and judged like any join.
-- p_rooms: [{"room": name, "sid": room sid, "participants": [{"sid", "identity",
-- "name", "metadata", "joinedAtMs", "permission": {...}}]}]. A participant that
-- cannot be recorded (its room busy past the lock timeout) is left for the
-- next run. Returns {"adopted": n, "accessJobIds": [...]}.
CREATE OR REPLACE FUNCTION public.livekit_presence_adopt(p_rooms jsonb, p_checked_at timestamptz)
RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' AS $$
DECLARE
  v_room jsonb;
  v_p jsonb;
  v_event jsonb;
  v_job bigint;
  v_jobs bigint[] := '{}';
  v_adopted integer := 0;
BEGIN
  FOR v_room IN SELECT e FROM jsonb_array_elements(coalesce(p_rooms, '[]')) e WHERE e ->> 'room' <> '' LOOP
    FOR v_p IN SELECT p FROM jsonb_array_elements(coalesce(v_room -> 'participants', '[]')) p
                WHERE p ->> 'sid' <> '' AND p ->> 'identity' <> ''
                  AND NOT EXISTS (SELECT 1 FROM public.voice_presence vp
                                   WHERE vp.room_name = v_room ->> 'room' AND vp.participant_sid = p ->> 'sid') LOOP
      v_event := jsonb_build_object('event', 'participant_joined',
                                    'room', jsonb_strip_nulls(jsonb_build_object('name', v_room ->> 'room',
                                                                                 'sid', nullif(v_room ->> 'sid', ''))),
                                    'participant', v_p);
      BEGIN
        PERFORM nexus_private.livekit_apply_event(v_event, p_checked_at);
        v_adopted := v_adopted + 1;
        v_job := nexus_private.livekit_access_join_check(v_event);
        IF v_job IS NOT NULL THEN
          v_jobs := v_jobs || v_job;
        END IF;
      EXCEPTION WHEN lock_not_available OR data_exception THEN
        NULL;
      END;
    END LOOP;
  END LOOP;
  RETURN jsonb_build_object('adopted', v_adopted, 'accessJobIds', to_jsonb(v_jobs));
END
$$;

REVOKE ALL ON FUNCTION nexus_private.livekit_rights_bump(text) FROM PUBLIC, anon, authenticated;
REVOKE ALL ON FUNCTION nexus_private.livekit_rights_version(uuid, text) FROM PUBLIC, anon, authenticated;
REVOKE ALL ON FUNCTION nexus_private.profiles_bump_livekit_rights() FROM PUBLIC, anon, authenticated;
REVOKE ALL ON FUNCTION nexus_private.rooms_bump_livekit_rights() FROM PUBLIC, anon, authenticated;
REVOKE ALL ON FUNCTION nexus_private.livekit_access_join_check(jsonb) FROM PUBLIC, anon, authenticated;
REVOKE ALL ON FUNCTION public.livekit_access_jobs_claim(text, integer, integer, jsonb) FROM PUBLIC, anon, authenticated;
REVOKE ALL ON FUNCTION public.livekit_access_rights(jsonb) FROM PUBLIC, anon, authenticated;
REVOKE ALL ON FUNCTION public.livekit_access_jobs_report(text, jsonb, jsonb, text, integer, integer)
  FROM PUBLIC, anon, authenticated;
REVOKE ALL ON FUNCTION public.livekit_presence_adopt(jsonb, timestamptz) FROM PUBLIC, anon, authenticated;
GRANT EXECUTE ON FUNCTION public.livekit_access_jobs_claim(text, integer, integer, jsonb) TO service_role;
GRANT EXECUTE ON FUNCTION public.livekit_access_rights(jsonb) TO service_role;
GRANT EXECUTE ON FUNCTION public.livekit_access_jobs_report(text, jsonb, jsonb, text, integer, integer) TO service_role;
GRANT EXECUTE ON FUNCTION public.livekit_presence_adopt(jsonb, timestamptz) TO service_role;
