-- Net bridges, the academy (skills, certifications, instruction requests) and
-- sim pods: one-to-one training rooms on LiveKit that expire.
--
-- A sim pod's LiveKit room name is its id ('sim-pod-<hex>'). livekit-token
-- resolves a room name to a pod before a net, and no net may take such a name,
-- so a pod room can never be joined under a net's (wider) rules.

CREATE TABLE public.voice_net_bridges (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  source_net_id uuid NOT NULL REFERENCES public.voice_nets (id) ON DELETE CASCADE,
  target_net_id uuid NOT NULL REFERENCES public.voice_nets (id) ON DELETE CASCADE,
  created_by uuid REFERENCES public.profiles (id) ON DELETE SET NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  CHECK (source_net_id <> target_net_id)
);
-- A bridge joins an unordered pair: A->B and B->A are the same bridge.
CREATE UNIQUE INDEX voice_net_bridges_pair_key
  ON public.voice_net_bridges ((least(source_net_id, target_net_id)), (greatest(source_net_id, target_net_id)));
CREATE INDEX voice_net_bridges_source_idx ON public.voice_net_bridges (source_net_id);
CREATE INDEX voice_net_bridges_target_idx ON public.voice_net_bridges (target_net_id);
CREATE INDEX voice_net_bridges_created_by_idx ON public.voice_net_bridges (created_by);

-- NOT VALID: enforced for every new or renamed net without failing the
-- migration on a project that already has such a net (rename it first).
ALTER TABLE public.voice_nets
  ADD CONSTRAINT voice_nets_code_not_sim_pod CHECK (lower(code) NOT LIKE 'sim-pod-%') NOT VALID;

CREATE TABLE public.skills (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  name text NOT NULL UNIQUE CHECK (char_length(name) BETWEEN 1 AND 120),
  description text NOT NULL DEFAULT '' CHECK (char_length(description) <= 2000),
  created_at timestamptz NOT NULL DEFAULT now()
);

-- A member certified for a skill may guide cadets in it.
CREATE TABLE public.certifications (
  user_id uuid NOT NULL REFERENCES public.profiles (id) ON DELETE CASCADE,
  skill_id uuid NOT NULL REFERENCES public.skills (id) ON DELETE CASCADE,
  certified_by uuid REFERENCES public.profiles (id) ON DELETE SET NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (user_id, skill_id)
);
-- "guides for this skill" (notifications, accept); user_id is the key's prefix
CREATE INDEX certifications_skill_idx ON public.certifications (skill_id, user_id);
CREATE INDEX certifications_certified_by_idx ON public.certifications (certified_by);

CREATE TABLE public.instruction_requests (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  skill_id uuid NOT NULL REFERENCES public.skills (id) ON DELETE CASCADE,
  cadet_id uuid NOT NULL REFERENCES public.profiles (id) ON DELETE CASCADE,
  guide_id uuid REFERENCES public.profiles (id) ON DELETE SET NULL,
  status text NOT NULL DEFAULT 'PENDING'
    CHECK (status IN ('PENDING', 'ACCEPTED', 'EXPIRED', 'CANCELLED', 'COMPLETED')),
  -- set on accept; the foreign key is added with sim_pods below
  sim_pod_id text,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  accepted_at timestamptz,
  closed_at timestamptz,
  CHECK (status <> 'ACCEPTED' OR (guide_id IS NOT NULL AND accepted_at IS NOT NULL)),
  CHECK ((status IN ('PENDING', 'ACCEPTED')) = (closed_at IS NULL))
);
-- One open (pending or in session) request per cadet and skill; this index
-- also settles two concurrent academy-request calls.
CREATE UNIQUE INDEX instruction_requests_open_key
  ON public.instruction_requests (cadet_id, skill_id) WHERE status IN ('PENDING', 'ACCEPTED');
CREATE INDEX instruction_requests_cadet_idx ON public.instruction_requests (cadet_id, created_at DESC);
CREATE INDEX instruction_requests_guide_idx ON public.instruction_requests (guide_id) WHERE guide_id IS NOT NULL;
CREATE INDEX instruction_requests_skill_idx ON public.instruction_requests (skill_id, created_at DESC);
CREATE INDEX instruction_requests_sim_pod_idx ON public.instruction_requests (sim_pod_id) WHERE sim_pod_id IS NOT NULL;
-- the expiry job's scan
CREATE INDEX instruction_requests_pending_idx ON public.instruction_requests (created_at) WHERE status = 'PENDING';

CREATE TABLE public.sim_pods (
  id text PRIMARY KEY CHECK (id ~ '^sim-pod-[0-9a-f]{32}$'),
  request_id uuid NOT NULL UNIQUE REFERENCES public.instruction_requests (id) ON DELETE CASCADE,
  -- the LiveKit room
  room_name text NOT NULL UNIQUE,
  cadet_id uuid NOT NULL REFERENCES public.profiles (id) ON DELETE CASCADE,
  guide_id uuid NOT NULL REFERENCES public.profiles (id) ON DELETE CASCADE,
  created_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz NOT NULL,
  ended_at timestamptz,
  -- EXPIRED (the schedule), ROOM_FINISHED (LiveKit closed the room)
  end_reason text CHECK (end_reason IN ('EXPIRED', 'ROOM_FINISHED', 'CANCELLED')),
  CHECK (cadet_id <> guide_id),
  CHECK (expires_at > created_at),
  CHECK ((ended_at IS NULL) = (end_reason IS NULL))
);
CREATE INDEX sim_pods_cadet_idx ON public.sim_pods (cadet_id);
CREATE INDEX sim_pods_guide_idx ON public.sim_pods (guide_id);
-- the expiry job's scan: live pods by expiry
CREATE INDEX sim_pods_due_idx ON public.sim_pods (expires_at) WHERE ended_at IS NULL;

ALTER TABLE public.instruction_requests
  ADD CONSTRAINT instruction_requests_sim_pod_fkey
  FOREIGN KEY (sim_pod_id) REFERENCES public.sim_pods (id) ON DELETE SET NULL;
