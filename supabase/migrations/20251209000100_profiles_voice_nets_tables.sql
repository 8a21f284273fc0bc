-- Members and voice nets.

CREATE TABLE public.profiles (
  id uuid PRIMARY KEY REFERENCES auth.users (id) ON DELETE CASCADE,
  callsign text CHECK (callsign IS NULL OR char_length(callsign) BETWEEN 1 AND 64),
  rank text NOT NULL DEFAULT 'vagrant'
    CHECK (rank IN ('vagrant', 'scout', 'voyager', 'founder', 'pioneer')),
  -- e.g. Rescue, Medic, brigged
  roles text[] NOT NULL DEFAULT '{}',
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON COLUMN public.profiles.rank IS 'vagrant < scout < voyager < founder < pioneer; set only by the service role';
COMMENT ON COLUMN public.profiles.roles IS 'Rescue, Medic, brigged, ...; set only by the service role';
CREATE INDEX profiles_roles_idx ON public.profiles USING gin (roles);

CREATE TABLE public.voice_nets (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  -- the LiveKit room name
  code text NOT NULL UNIQUE CHECK (code ~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$'),
  label text NOT NULL CHECK (char_length(label) BETWEEN 1 AND 120),
  min_rank_to_join text NOT NULL DEFAULT 'vagrant'
    CHECK (min_rank_to_join IN ('vagrant', 'scout', 'voyager', 'founder', 'pioneer')),
  min_rank_to_rx text NOT NULL DEFAULT 'vagrant'
    CHECK (min_rank_to_rx IN ('vagrant', 'scout', 'voyager', 'founder', 'pioneer')),
  min_rank_to_tx text NOT NULL DEFAULT 'scout'
    CHECK (min_rank_to_tx IN ('vagrant', 'scout', 'voyager', 'founder', 'pioneer')),
  linked_squad_id uuid,
  created_at timestamptz NOT NULL DEFAULT now()
);
