-- LiveKit webhook pipeline: the durable job queue (private) and the mirrors the
-- frontend reads (voice_presence, livekit_rooms) plus egress recordings.
--
-- Ordering: LiveKit may deliver an event twice, late or out of order. Every
-- event is applied by one SQL function (next migration) that orders by the
-- event's createdAt, never by wall-clock arrival, and treats a participant sid
-- as one session whose close is final.
--
-- Contract for other features (the academy's sim pods):
--   * public.livekit_rooms: one row per LiveKit room name (the current or last
--     incarnation). `finished_at` goes from NULL to non-NULL exactly when the
--     room ends (LiveKit's room_finished, or the reconciler finding the room
--     gone, `finished_reason` says which); a room restarted under the same name
--     sets it back to NULL with a new room_sid. An AFTER INSERT OR UPDATE OF
--     finished_at trigger comparing OLD/NEW sees every end.
--   * public.voice_presence: to end sessions yourself (a pod expires), close
--     the open rows of the room: UPDATE ... SET left_at = now(), left_reason =
--     '<your_reason>' WHERE room_name = $1 AND left_at IS NULL. left_reason is
--     free text (ours: participant_left, connection_aborted, duplicate_identity,
--     room_finished, absent_in_livekit, room_not_found, max_age_exceeded).
--     Nothing ever reopens a closed row. Only participant_left and
--     connection_aborted are LiveKit's word; every other close is inferred and
--     may later be replaced by LiveKit's exact leave, or by an earlier
--     inferred end (a room_finished that happened before your close).

CREATE TABLE nexus_private.livekit_webhook_jobs (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  -- LiveKit's event id (or sha256 of the body when an old server sends none)
  event_id text NOT NULL UNIQUE CHECK (char_length(event_id) BETWEEN 1 AND 200),
  event_type text NOT NULL CHECK (char_length(event_type) BETWEEN 1 AND 64),
  room_name text,
  payload jsonb NOT NULL,
  -- the event's createdAt (arrival time if absent): what ordering uses
  event_created_at timestamptz NOT NULL,
  status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'processing', 'done', 'dead')),
  attempt integer NOT NULL DEFAULT 0 CHECK (attempt >= 0),
  max_attempts integer NOT NULL DEFAULT 8 CHECK (max_attempts BETWEEN 1 AND 100),
  next_run_at timestamptz NOT NULL DEFAULT now(),
  locked_at timestamptz,
  locked_by text,
  last_error text,
  -- [{at, attempt, worker, sqlstate, error}], oldest first
  error_history jsonb NOT NULL DEFAULT '[]'::jsonb CHECK (jsonb_typeof(error_history) = 'array'),
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  done_at timestamptz,
  CHECK ((status = 'processing') = (locked_at IS NOT NULL))
);
-- the seed's due index, partial on pending, and its lock index (stale-lock sweep)
CREATE INDEX livekit_webhook_jobs_due_idx
  ON nexus_private.livekit_webhook_jobs (next_run_at) WHERE status = 'pending';
CREATE INDEX livekit_webhook_jobs_locked_idx
  ON nexus_private.livekit_webhook_jobs (locked_at) WHERE status = 'processing';
CREATE INDEX livekit_webhook_jobs_done_idx
  ON nexus_private.livekit_webhook_jobs (done_at) WHERE status = 'done';

-- Every room incarnation (room sid) seen, so an event arriving after its room
-- ended can still be judged against that incarnation, not the current one.
CREATE TABLE nexus_private.livekit_room_incarnations (
  room_name text NOT NULL,
  room_sid text NOT NULL,
  started_at timestamptz,
  finished_at timestamptz,
  last_event_at timestamptz NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (room_name, room_sid)
);
CREATE INDEX livekit_room_incarnations_finished_idx
  ON nexus_private.livekit_room_incarnations (finished_at) WHERE finished_at IS NOT NULL;

CREATE TABLE public.voice_presence (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  room_name text NOT NULL,
  room_sid text,
  participant_identity text NOT NULL,
  participant_sid text NOT NULL,
  participant_name text,
  -- the participant's token metadata, parsed: {"userId": ..., "rank": ...}
  participant_metadata jsonb NOT NULL DEFAULT '{}'::jsonb,
  -- metadata userId (or the identity) when it is a uuid; no FK: presence
  -- mirrors LiveKit, whose participants include bots and deleted users
  user_id uuid,
  joined_at timestamptz NOT NULL,
  left_at timestamptz,
  left_reason text,
  -- LiveKit's DisconnectReason name from the leave event, e.g. DUPLICATE_IDENTITY
  disconnect_reason text,
  -- createdAt of the newest event applied to this row
  last_event_at timestamptz NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  -- a sid is one session: joins and leaves of it meet on this key
  CONSTRAINT voice_presence_session_key UNIQUE (room_name, participant_sid),
  CHECK ((left_at IS NULL) = (left_reason IS NULL)),
  CHECK (left_at IS NULL OR left_at >= joined_at)
);
-- who is on which net now (frontend), stale-presence sweep (reconciler)
CREATE INDEX voice_presence_open_idx ON public.voice_presence (room_name, joined_at) WHERE left_at IS NULL;
-- one session per identity per room (DUPLICATE_IDENTITY)
CREATE INDEX voice_presence_identity_idx ON public.voice_presence (room_name, participant_identity, joined_at);
CREATE INDEX voice_presence_user_idx ON public.voice_presence (user_id) WHERE user_id IS NOT NULL;
-- the runbook's monitoring queries filter on joined_at
CREATE INDEX voice_presence_joined_idx ON public.voice_presence (joined_at);
CREATE INDEX voice_presence_left_idx ON public.voice_presence (left_at) WHERE left_at IS NOT NULL;

CREATE TABLE public.livekit_rooms (
  room_name text PRIMARY KEY,
  room_sid text NOT NULL,
  started_at timestamptz,
  finished_at timestamptz,
  -- room_finished (LiveKit said so) or room_not_found (the reconciler asked)
  finished_reason text,
  -- LiveKit's RoomEndReason name when it gave one
  end_reason text,
  last_event_at timestamptz NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  CHECK ((finished_at IS NULL) = (finished_reason IS NULL))
);
CREATE INDEX livekit_rooms_open_idx ON public.livekit_rooms (last_event_at) WHERE finished_at IS NULL;

CREATE TABLE public.livekit_recordings (
  egress_id text PRIMARY KEY,
  room_name text,
  room_sid text,
  -- LiveKit's EgressStatus name, e.g. EGRESS_ACTIVE, EGRESS_COMPLETE
  status text NOT NULL,
  started_at timestamptz,
  ended_at timestamptz,
  error text,
  -- egressInfo as LiveKit sent it (file, stream and segment results)
  info jsonb NOT NULL,
  -- ordering key: egressInfo.updatedAt (ns) when present, else createdAt
  last_event_at timestamptz NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX livekit_recordings_room_idx ON public.livekit_recordings (room_name, started_at);

-- The frontend subscribes to presence changes.
ALTER PUBLICATION supabase_realtime ADD TABLE public.voice_presence;
