-- Schemas. `nexus_private` holds machinery the frontend never reads (webhook
-- jobs, delivery attempts). It is not exposed through the Supabase API and
-- the API roles get no usage on it.
CREATE SCHEMA IF NOT EXISTS nexus_private;
REVOKE ALL ON SCHEMA nexus_private FROM PUBLIC;
REVOKE ALL ON SCHEMA nexus_private FROM anon, authenticated;
GRANT USAGE ON SCHEMA nexus_private TO service_role;
