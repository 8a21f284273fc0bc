-- Row-level security for members and voice nets, then their policies.
ALTER TABLE public.profiles ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.voice_nets ENABLE ROW LEVEL SECURITY;

-- Table privileges first: a member may change only harmless profile columns,
-- never rank or roles (those are the service role's).
REVOKE ALL ON public.profiles FROM anon;
REVOKE INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON public.profiles FROM authenticated;
GRANT SELECT ON public.profiles TO authenticated;
GRANT UPDATE (callsign) ON public.profiles TO authenticated;

REVOKE ALL ON public.voice_nets FROM anon;
REVOKE INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON public.voice_nets FROM authenticated;
GRANT SELECT ON public.voice_nets TO authenticated;

CREATE POLICY profiles_anon_none ON public.profiles
  AS RESTRICTIVE FOR ALL TO anon USING (false) WITH CHECK (false);
CREATE POLICY profiles_select_own ON public.profiles
  FOR SELECT TO authenticated USING (id = (SELECT auth.uid()));
CREATE POLICY profiles_update_own ON public.profiles
  FOR UPDATE TO authenticated
  USING (id = (SELECT auth.uid())) WITH CHECK (id = (SELECT auth.uid()));
CREATE POLICY profiles_service_all ON public.profiles
  FOR ALL TO service_role USING (true) WITH CHECK (true);

CREATE POLICY voice_nets_anon_none ON public.voice_nets
  AS RESTRICTIVE FOR ALL TO anon USING (false) WITH CHECK (false);
CREATE POLICY voice_nets_select_members ON public.voice_nets
  FOR SELECT TO authenticated USING (true);
CREATE POLICY voice_nets_service_all ON public.voice_nets
  FOR ALL TO service_role USING (true) WITH CHECK (true);
