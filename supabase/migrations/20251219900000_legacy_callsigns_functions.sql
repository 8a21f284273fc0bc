-- The text rules apply when a callsign is set or changed, not to every
-- write of a profile. As a CHECK constraint (20251216000200, NOT VALID) the
-- rule ran on every UPDATE of the row: a member whose callsign predates it
-- (a zero-width joiner from an emoji sequence, say) could no longer be
-- promoted or brigged. Now a trigger, which checks only a callsign that is
-- set or changed, and raises what the constraint raised (check_violation,
-- named profiles_callsign_shown_plainly).
CREATE OR REPLACE FUNCTION public.profiles_callsign_shown_plainly() RETURNS trigger
LANGUAGE plpgsql SET search_path = '' AS $$
BEGIN
  IF NEW.callsign IS NOT NULL
     AND (TG_OP = 'INSERT' OR NEW.callsign IS DISTINCT FROM OLD.callsign)
     AND NOT public.text_is_shown_plainly(NEW.callsign) THEN
    RAISE EXCEPTION 'new row for relation "profiles" violates check constraint "profiles_callsign_shown_plainly"'
      USING ERRCODE = 'check_violation', CONSTRAINT = 'profiles_callsign_shown_plainly',
            TABLE = 'profiles', SCHEMA = 'public';
  END IF;
  RETURN NEW;
END
$$;

CREATE TRIGGER profiles_callsign_shown_plainly
  BEFORE INSERT OR UPDATE OF callsign ON public.profiles
  FOR EACH ROW EXECUTE FUNCTION public.profiles_callsign_shown_plainly();

ALTER TABLE public.profiles DROP CONSTRAINT profiles_callsign_shown_plainly;

REVOKE ALL ON FUNCTION public.profiles_callsign_shown_plainly() FROM PUBLIC, anon, authenticated;
