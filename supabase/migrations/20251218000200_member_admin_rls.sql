-- Row-level security for member administration, then its policies. The audit
-- is read by founders and pioneers and written only by the service role (in
-- practice by the SECURITY DEFINER change functions); nobody updates or
-- deletes it. Access jobs are the service role's alone.
ALTER TABLE public.admin_audit ENABLE ROW LEVEL SECURITY;
ALTER TABLE nexus_private.livekit_access_jobs ENABLE ROW LEVEL SECURITY;

REVOKE ALL ON public.admin_audit FROM PUBLIC, anon, authenticated, service_role;
GRANT SELECT ON public.admin_audit TO authenticated;
GRANT SELECT, INSERT ON public.admin_audit TO service_role;
REVOKE ALL ON SEQUENCE public.admin_audit_id_seq FROM anon, authenticated;

REVOKE ALL ON nexus_private.livekit_access_jobs FROM PUBLIC, anon, authenticated;
GRANT SELECT, INSERT, UPDATE, DELETE ON nexus_private.livekit_access_jobs TO service_role;

CREATE POLICY admin_audit_anon_none ON public.admin_audit
  AS RESTRICTIVE FOR ALL TO anon USING (false) WITH CHECK (false);
CREATE POLICY admin_audit_select_founders ON public.admin_audit
  FOR SELECT TO authenticated USING (EXISTS (
    SELECT 1 FROM public.profiles p
     WHERE p.id = (SELECT auth.uid()) AND public.rank_level(p.rank) >= public.rank_level('founder')));
-- Guests read nothing of ours (20251216000300_guests_rls.sql), the audit included.
CREATE POLICY admin_audit_guests_none ON public.admin_audit
  AS RESTRICTIVE FOR ALL TO authenticated
  USING (coalesce((SELECT auth.jwt()) -> 'is_anonymous', 'false'::jsonb) = 'false'::jsonb)
  WITH CHECK (coalesce((SELECT auth.jwt()) -> 'is_anonymous', 'false'::jsonb) = 'false'::jsonb);
CREATE POLICY admin_audit_service_read ON public.admin_audit
  FOR SELECT TO service_role USING (true);
CREATE POLICY admin_audit_service_append ON public.admin_audit
  FOR INSERT TO service_role WITH CHECK (true);

CREATE POLICY livekit_access_jobs_anon_none ON nexus_private.livekit_access_jobs
  AS RESTRICTIVE FOR ALL TO anon USING (false) WITH CHECK (false);
CREATE POLICY livekit_access_jobs_authenticated_none ON nexus_private.livekit_access_jobs
  AS RESTRICTIVE FOR ALL TO authenticated USING (false) WITH CHECK (false);
CREATE POLICY livekit_access_jobs_service_all ON nexus_private.livekit_access_jobs
  FOR ALL TO service_role USING (true) WITH CHECK (true);
