-- Row-level security for the LiveKit webhook pipeline, then its policies.
-- Members read who is on which net (voice_presence) and which rooms are live
-- (livekit_rooms); only the service role writes. Jobs and recordings are the
-- service role's alone.
ALTER TABLE nexus_private.livekit_webhook_jobs ENABLE ROW LEVEL SECURITY;
ALTER TABLE nexus_private.livekit_room_incarnations ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.voice_presence ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.livekit_rooms ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.livekit_recordings ENABLE ROW LEVEL SECURITY;

-- Table privileges first (the shim reproduces Supabase's default grants on public).
REVOKE ALL ON nexus_private.livekit_webhook_jobs FROM PUBLIC, anon, authenticated;
GRANT SELECT, INSERT, UPDATE, DELETE ON nexus_private.livekit_webhook_jobs TO service_role;
REVOKE ALL ON nexus_private.livekit_room_incarnations FROM PUBLIC, anon, authenticated;
GRANT SELECT, INSERT, UPDATE, DELETE ON nexus_private.livekit_room_incarnations TO service_role;

REVOKE ALL ON public.voice_presence FROM anon;
REVOKE INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON public.voice_presence FROM authenticated;
GRANT SELECT ON public.voice_presence TO authenticated;
REVOKE ALL ON SEQUENCE public.voice_presence_id_seq FROM anon, authenticated;

REVOKE ALL ON public.livekit_rooms FROM anon;
REVOKE INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON public.livekit_rooms FROM authenticated;
GRANT SELECT ON public.livekit_rooms TO authenticated;

REVOKE ALL ON public.livekit_recordings FROM anon, authenticated;

CREATE POLICY livekit_webhook_jobs_anon_none ON nexus_private.livekit_webhook_jobs
  AS RESTRICTIVE FOR ALL TO anon USING (false) WITH CHECK (false);
CREATE POLICY livekit_webhook_jobs_authenticated_none ON nexus_private.livekit_webhook_jobs
  AS RESTRICTIVE FOR ALL TO authenticated USING (false) WITH CHECK (false);
CREATE POLICY livekit_webhook_jobs_service_all ON nexus_private.livekit_webhook_jobs
  FOR ALL TO service_role USING (true) WITH CHECK (true);

CREATE POLICY livekit_room_incarnations_anon_none ON nexus_private.livekit_room_incarnations
  AS RESTRICTIVE FOR ALL TO anon USING (false) WITH CHECK (false);
CREATE POLICY livekit_room_incarnations_authenticated_none ON nexus_private.livekit_room_incarnations
  AS RESTRICTIVE FOR ALL TO authenticated USING (false) WITH CHECK (false);
CREATE POLICY livekit_room_incarnations_service_all ON nexus_private.livekit_room_incarnations
  FOR ALL TO service_role USING (true) WITH CHECK (true);

CREATE POLICY voice_presence_anon_none ON public.voice_presence
  AS RESTRICTIVE FOR ALL TO anon USING (false) WITH CHECK (false);
CREATE POLICY voice_presence_select_members ON public.voice_presence
  FOR SELECT TO authenticated USING (true);
CREATE POLICY voice_presence_service_all ON public.voice_presence
  FOR ALL TO service_role USING (true) WITH CHECK (true);

CREATE POLICY livekit_rooms_anon_none ON public.livekit_rooms
  AS RESTRICTIVE FOR ALL TO anon USING (false) WITH CHECK (false);
CREATE POLICY livekit_rooms_select_members ON public.livekit_rooms
  FOR SELECT TO authenticated USING (true);
CREATE POLICY livekit_rooms_service_all ON public.livekit_rooms
  FOR ALL TO service_role USING (true) WITH CHECK (true);

CREATE POLICY livekit_recordings_anon_none ON public.livekit_recordings
  AS RESTRICTIVE FOR ALL TO anon USING (false) WITH CHECK (false);
CREATE POLICY livekit_recordings_authenticated_none ON public.livekit_recordings
  AS RESTRICTIVE FOR ALL TO authenticated USING (false) WITH CHECK (false);
CREATE POLICY livekit_recordings_service_all ON public.livekit_recordings
  FOR ALL TO service_role USING (true) WITH CHECK (true);
