-- A flare outlives its sender: deleting a member keeps their flares with no
-- sender (as the predecessor's flares were kept), instead of deleting them.
ALTER TABLE public.flares ALTER COLUMN sender_id DROP NOT NULL;
ALTER TABLE public.flares DROP CONSTRAINT flares_sender_id_fkey;
ALTER TABLE public.flares ADD CONSTRAINT flares_sender_id_fkey
  FOREIGN KEY (sender_id) REFERENCES public.profiles (id) ON DELETE SET NULL;
