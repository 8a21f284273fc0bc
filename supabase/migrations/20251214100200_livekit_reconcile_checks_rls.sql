-- The reconciler's bookkeeping is the service role's alone.
ALTER TABLE nexus_private.livekit_reconcile_checks ENABLE ROW LEVEL SECURITY;

REVOKE ALL ON nexus_private.livekit_reconcile_checks FROM PUBLIC, anon, authenticated;
GRANT SELECT, INSERT, UPDATE, DELETE ON nexus_private.livekit_reconcile_checks TO service_role;

CREATE POLICY livekit_reconcile_checks_anon_none ON nexus_private.livekit_reconcile_checks
  AS RESTRICTIVE FOR ALL TO anon USING (false) WITH CHECK (false);
CREATE POLICY livekit_reconcile_checks_authenticated_none ON nexus_private.livekit_reconcile_checks
  AS RESTRICTIVE FOR ALL TO authenticated USING (false) WITH CHECK (false);
CREATE POLICY livekit_reconcile_checks_service_all ON nexus_private.livekit_reconcile_checks
  FOR ALL TO service_role USING (true) WITH CHECK (true);
