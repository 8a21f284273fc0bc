-- A brigged founder or pioneer no longer reads the audit (issue 25): the
-- brig takes every founder power, as member-admin and net-bridge already
-- refuse a brigged actor. A brig in any spelling counts, for rows written
-- with triggers off (the trigger stores `brigged`).
DROP POLICY admin_audit_select_founders ON public.admin_audit;
CREATE POLICY admin_audit_select_founders ON public.admin_audit
  FOR SELECT TO authenticated USING (EXISTS (
    SELECT 1 FROM public.profiles p
     WHERE p.id = (SELECT auth.uid()) AND public.rank_level(p.rank) >= public.rank_level('founder')
       AND NOT EXISTS (SELECT 1 FROM unnest(p.roles) r WHERE public.canonical_role(r) = 'brigged')));
