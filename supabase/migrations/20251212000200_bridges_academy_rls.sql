-- Row-level security for net bridges, the academy and sim pods, then their
-- policies. Members only read; every write goes through the functions above.
ALTER TABLE public.voice_net_bridges ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.skills ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.certifications ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.instruction_requests ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.sim_pods ENABLE ROW LEVEL SECURITY;

-- Table privileges first (Supabase grants the API roles everything by default).
REVOKE ALL ON public.voice_net_bridges, public.skills, public.certifications,
              public.instruction_requests, public.sim_pods FROM anon;
REVOKE INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER
  ON public.voice_net_bridges, public.skills, public.certifications,
     public.instruction_requests, public.sim_pods FROM authenticated;
GRANT SELECT ON public.voice_net_bridges, public.skills, public.certifications,
                public.instruction_requests, public.sim_pods TO authenticated;

-- Bridges are part of the net layout every member sees.
CREATE POLICY voice_net_bridges_anon_none ON public.voice_net_bridges
  AS RESTRICTIVE FOR ALL TO anon USING (false) WITH CHECK (false);
CREATE POLICY voice_net_bridges_select_members ON public.voice_net_bridges
  FOR SELECT TO authenticated USING (true);
CREATE POLICY voice_net_bridges_service_all ON public.voice_net_bridges
  FOR ALL TO service_role USING (true) WITH CHECK (true);

-- The academy's catalogue and who may guide in what are public to members.
CREATE POLICY skills_anon_none ON public.skills
  AS RESTRICTIVE FOR ALL TO anon USING (false) WITH CHECK (false);
CREATE POLICY skills_select_members ON public.skills
  FOR SELECT TO authenticated USING (true);
CREATE POLICY skills_service_all ON public.skills
  FOR ALL TO service_role USING (true) WITH CHECK (true);

CREATE POLICY certifications_anon_none ON public.certifications
  AS RESTRICTIVE FOR ALL TO anon USING (false) WITH CHECK (false);
CREATE POLICY certifications_select_members ON public.certifications
  FOR SELECT TO authenticated USING (true);
CREATE POLICY certifications_service_all ON public.certifications
  FOR ALL TO service_role USING (true) WITH CHECK (true);

-- A cadet and a guide read their own requests; a certified guide also reads
-- the pending requests for their skills (the academy's job board).
CREATE POLICY instruction_requests_anon_none ON public.instruction_requests
  AS RESTRICTIVE FOR ALL TO anon USING (false) WITH CHECK (false);
CREATE POLICY instruction_requests_select_own ON public.instruction_requests
  FOR SELECT TO authenticated
  USING (cadet_id = (SELECT auth.uid()) OR guide_id = (SELECT auth.uid()));
CREATE POLICY instruction_requests_select_pending_for_guides ON public.instruction_requests
  FOR SELECT TO authenticated
  USING (status = 'PENDING' AND EXISTS (
    SELECT 1 FROM public.certifications c
    WHERE c.skill_id = instruction_requests.skill_id AND c.user_id = (SELECT auth.uid())));
CREATE POLICY instruction_requests_service_all ON public.instruction_requests
  FOR ALL TO service_role USING (true) WITH CHECK (true);

CREATE POLICY sim_pods_anon_none ON public.sim_pods
  AS RESTRICTIVE FOR ALL TO anon USING (false) WITH CHECK (false);
CREATE POLICY sim_pods_select_own ON public.sim_pods
  FOR SELECT TO authenticated
  USING (cadet_id = (SELECT auth.uid()) OR guide_id = (SELECT auth.uid()));
CREATE POLICY sim_pods_service_all ON public.sim_pods
  FOR ALL TO service_role USING (true) WITH CHECK (true);
