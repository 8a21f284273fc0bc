-- Callsigns are unique after NFKC and case folding (functions in the next
-- migration). Callsigns that already collided when the rule arrived stay as
-- they are: all but the first of each such group are marked here, outside
-- the unique index, until their holder changes them.
ALTER TABLE public.profiles
  ADD COLUMN callsign_grandfathered boolean NOT NULL DEFAULT false;
COMMENT ON COLUMN public.profiles.callsign_grandfathered IS
  'true: this callsign already collided with another when callsigns became unique; cleared when it changes';
