-- Member administration (issue 16): the append-only audit of every change an
-- operator or a founder+ makes, and the private queue that brings LiveKit to
-- each member's current rights after any change to ranks, roles or nets.

-- One row per change, never updated or deleted (privileges and a trigger).
-- No foreign keys: the trail outlives the members and nets it names.
CREATE TABLE public.admin_audit (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  at timestamptz NOT NULL DEFAULT clock_timestamp(),
  -- 'member' (actor_id is the founder+ who acted) or 'operator' (nexus admin, labelled)
  actor text NOT NULL CHECK (actor IN ('member', 'operator')),
  actor_id uuid,
  actor_label text CHECK (actor_label IS NULL OR char_length(actor_label) BETWEEN 1 AND 120),
  action text NOT NULL CHECK (action IN ('member.change', 'net.create', 'net.set', 'skill.add', 'certify')),
  -- the member changed (member.change, certify)
  member_id uuid,
  -- what else the row is about: a net code, a skill name
  subject text,
  before jsonb,
  after jsonb NOT NULL,
  reason text NOT NULL CHECK (char_length(reason) BETWEEN 1 AND 500),
  CHECK ((actor = 'member') = (actor_id IS NOT NULL)),
  CHECK (actor = 'member' OR actor_label IS NOT NULL)
);
COMMENT ON TABLE public.admin_audit IS
  'Append-only: every admin change (who, whom, before, after, why); nexus db smoke checks nobody may update or delete';
CREATE INDEX admin_audit_member_idx ON public.admin_audit (member_id, id) WHERE member_id IS NOT NULL;
CREATE INDEX admin_audit_at_idx ON public.admin_audit (at);

-- LiveKit follows the database: a job names a member (every room where
-- voice_presence has them open), a room (everyone LiveKit lists in it), or
-- both (one member in one room: a join to check). Applying a job brings
-- LiveKit to current rights, so one pending job per target is enough.
CREATE TABLE nexus_private.livekit_access_jobs (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  user_id uuid,
  room_name text,
  -- what queued it: profile, net, join
  cause text NOT NULL CHECK (cause IN ('profile', 'net', 'join')),
  status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'processing')),
  attempt integer NOT NULL DEFAULT 0 CHECK (attempt >= 0),
  next_run_at timestamptz NOT NULL DEFAULT now(),
  locked_at timestamptz,
  locked_by text,
  last_error text,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  CHECK (user_id IS NOT NULL OR room_name IS NOT NULL),
  CHECK ((status = 'processing') = (locked_at IS NOT NULL))
);
CREATE UNIQUE INDEX livekit_access_jobs_pending_key ON nexus_private.livekit_access_jobs
  ((coalesce(user_id, '00000000-0000-0000-0000-000000000000'::uuid)), (coalesce(room_name, '')))
  WHERE status = 'pending';
CREATE INDEX livekit_access_jobs_due_idx ON nexus_private.livekit_access_jobs (next_run_at) WHERE status = 'pending';
CREATE INDEX livekit_access_jobs_locked_idx ON nexus_private.livekit_access_jobs (locked_at) WHERE status = 'processing';
