-- Row-level security for the rights versions (20251222000000): the service role's alone.
ALTER TABLE nexus_private.livekit_rights_versions ENABLE ROW LEVEL SECURITY;

REVOKE ALL ON nexus_private.livekit_rights_versions FROM PUBLIC, anon, authenticated;
GRANT SELECT, INSERT, UPDATE, DELETE ON nexus_private.livekit_rights_versions TO service_role;
REVOKE ALL ON SEQUENCE nexus_private.livekit_rights_version_seq FROM PUBLIC, anon, authenticated;
GRANT USAGE ON SEQUENCE nexus_private.livekit_rights_version_seq TO service_role;

CREATE POLICY livekit_rights_versions_anon_none ON nexus_private.livekit_rights_versions
  AS RESTRICTIVE FOR ALL TO anon USING (false) WITH CHECK (false);
CREATE POLICY livekit_rights_versions_authenticated_none ON nexus_private.livekit_rights_versions
  AS RESTRICTIVE FOR ALL TO authenticated USING (false) WITH CHECK (false);
CREATE POLICY livekit_rights_versions_service_all ON nexus_private.livekit_rights_versions
  FOR ALL TO service_role USING (true) WITH CHECK (true);
