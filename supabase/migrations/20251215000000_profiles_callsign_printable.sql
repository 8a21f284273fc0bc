-- Callsigns are shown to other members (LiveKit names, flare and academy push
-- text) and members edit their own, so they may not carry control characters.
-- NOT VALID: existing rows are left as they are; every new write is checked.
ALTER TABLE public.profiles
  ADD CONSTRAINT profiles_callsign_printable
  CHECK (callsign IS NULL OR (callsign !~ '[[:cntrl:]]' AND btrim(callsign) <> '')) NOT VALID;

-- A sign-up must never fail on its metadata: the callsign it carries is
-- cleaned (control characters become spaces) rather than refused.
CREATE OR REPLACE FUNCTION public.handle_new_auth_user() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' AS $$
BEGIN
  INSERT INTO public.profiles (id, callsign)
  VALUES (
    NEW.id,
    nullif(btrim(regexp_replace(left(coalesce(NEW.raw_user_meta_data ->> 'callsign', ''), 64),
                                '[[:cntrl:]]+', ' ', 'g')), '')
  )
  ON CONFLICT (id) DO NOTHING;
  RETURN NEW;
END
$$;

REVOKE ALL ON FUNCTION public.handle_new_auth_user() FROM PUBLIC, anon, authenticated;
