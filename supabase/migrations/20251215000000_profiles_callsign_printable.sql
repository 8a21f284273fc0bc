-- Callsigns are shown to other members (LiveKit names, flare and academy push
-- text) and members edit their own, so they may not carry control characters
-- (line breaks, bidi overrides are format characters and are stripped where
-- names are minted; control characters are refused at the source).
-- NOT VALID: existing rows are left as they are; every new write is checked.
ALTER TABLE public.profiles
  ADD CONSTRAINT profiles_callsign_printable
  CHECK (callsign IS NULL OR (callsign !~ '[[:cntrl:]]' AND btrim(callsign) <> '')) NOT VALID;
