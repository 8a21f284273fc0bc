-- Adopting the predecessor's database, step 1 of 2 (step 2 is
-- 20251220000100_adopt_predecessor_convert.sql; docs/cutover.md is the guide).
--
-- On an empty database this file does nothing. On a database in the
-- predecessor's shape (../shared/predecessor-schema.md) it:
--   * records what is there before anything changes, in the schema
--     `nexus_adopt` (not exposed through the API): every table, function and
--     type of theirs in public, which the chain leaves in place as foreign;
--   * marks the predecessor's migration history reverted, as
--     `supabase migration repair --status reverted` does, keeping the rows
--     in nexus_adopt.reverted_history (nexus db adopt does this before
--     `supabase db push`, which refuses a history it does not know);
--   * sets the tables whose names ours take aside into `nexus_adopt`, as they
--     are, with their rows, minus their policies and foreign keys, so the rest
--     of the chain creates ours; step 2 converts their rows into ours;
--   * drops their sign-up trigger `on_auth_user_created` (ours has the name).
-- Nothing of theirs is dropped: their other tables, their columns on the
-- tables set aside (step 2 puts them back on ours) and their functions stay.
-- It runs only inside the one transaction nexus db adopt opens for the whole
-- chain (the setting nexus.adopting says so); anything else is refused, so a
-- failure later in the chain can never leave the predecessor half set aside.
DO $$
DECLARE
  v_ours constant text[] := ARRAY['profiles', 'voice_nets', 'voice_net_bridges', 'voice_presence',
                                  'push_subscriptions', 'notification_queue', 'flares', 'skills',
                                  'certifications', 'instruction_requests'];
  v_table text;
  v_rows bigint;
  r record;
BEGIN
  IF to_regclass('public.profiles') IS NULL THEN
    RETURN;  -- an empty database: nothing to adopt
  END IF;
  IF to_regclass('public.livekit_rooms') IS NOT NULL OR to_regclass('nexus_private.push_deliveries') IS NOT NULL THEN
    RAISE EXCEPTION 'this database holds an earlier build of this project''s own schema, not the predecessor''s'
      USING HINT = 'recreate it from the current migrations (make dev does so for .data); never adopt it';
  END IF;
  -- Set aside through converted, or nothing: applied alone (as `supabase db
  -- push` applies each file in its own transaction), a failure in any later
  -- file would leave the predecessor's tables set aside and public.profiles
  -- empty, breaking the old app and ours. nexus db adopt (and nexus db
  -- migrate) run the whole chain in one transaction and say so here.
  IF coalesce(current_setting('nexus.adopting', true), '') <> 'one transaction' THEN
    RAISE EXCEPTION 'refusing to adopt the predecessor''s database one file at a time'
      USING HINT = 'run `nexus db adopt` (docs/cutover.md): it applies the set-aside through the conversion as one '
                   'transaction; `supabase db push` applies each file in its own and is not supported here';
  END IF;

  CREATE SCHEMA IF NOT EXISTS nexus_adopt;
  REVOKE ALL ON SCHEMA nexus_adopt FROM PUBLIC;
  EXECUTE 'REVOKE ALL ON SCHEMA nexus_adopt FROM anon, authenticated';
  COMMENT ON SCHEMA nexus_adopt IS
    'The adoption record: the predecessor''s rows as they were, what was converted, what is foreign. '
    'Not exposed through the API. Drop it once the cutover is accepted (docs/cutover.md).';

  -- What is not ours and stays in place: kind and name as nexus db verify names them.
  CREATE TABLE IF NOT EXISTS nexus_adopt.foreign_objects (
    kind text NOT NULL, name text NOT NULL, recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, name));
  -- Each conversion and how many rows it touched (step 2 writes them).
  CREATE TABLE IF NOT EXISTS nexus_adopt.conversions (
    ord integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY, step text NOT NULL UNIQUE,
    rows bigint NOT NULL, detail text NOT NULL DEFAULT '', done_at timestamptz NOT NULL DEFAULT now());
  CREATE TABLE IF NOT EXISTS nexus_adopt.reverted_history (
    version text PRIMARY KEY, name text, statements text[], reverted_at timestamptz NOT NULL DEFAULT now());

  INSERT INTO nexus_adopt.foreign_objects (kind, name)
  SELECT 'table', format('%I.%I', n.nspname, c.relname)
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'f') AND NOT (c.relname = ANY (v_ours))
    AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype = 'e')
  UNION ALL
  SELECT 'function', format('%I.%I(%s)', n.nspname, p.proname, pg_get_function_identity_arguments(p.oid))
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
  WHERE n.nspname = 'public' AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')
  UNION ALL
  SELECT 'type', format('%I.%I', n.nspname, t.typname)
  FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
  WHERE n.nspname = 'public' AND (t.typtype IN ('e', 'd')
        OR (t.typtype = 'c' AND (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c'))
    AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = t.oid AND d.deptype = 'e')
  ON CONFLICT DO NOTHING;

  -- The predecessor's history: reverted, and kept here. Ours starts at 20251208.
  IF to_regclass('supabase_migrations.schema_migrations') IS NOT NULL THEN
    INSERT INTO nexus_adopt.reverted_history (version, name, statements)
    SELECT version, name, statements FROM supabase_migrations.schema_migrations WHERE version < '20251208'
    ON CONFLICT (version) DO NOTHING;
    DELETE FROM supabase_migrations.schema_migrations WHERE version < '20251208';
  END IF;

  FOREACH v_table IN ARRAY v_ours LOOP
    CONTINUE WHEN to_regclass(format('public.%I', v_table)) IS NULL;
    FOR r IN SELECT policyname FROM pg_policies WHERE schemaname = 'public' AND tablename = v_table LOOP
      EXECUTE format('DROP POLICY %I ON public.%I', r.policyname, v_table);
    END LOOP;
    EXECUTE format('ALTER TABLE public.%I SET SCHEMA nexus_adopt', v_table);
    EXECUTE format('REVOKE ALL ON nexus_adopt.%I FROM PUBLIC', v_table);
    EXECUTE format('REVOKE ALL ON nexus_adopt.%I FROM anon, authenticated', v_table);
    EXECUTE format('ALTER TABLE nexus_adopt.%I ENABLE ROW LEVEL SECURITY', v_table);
    EXECUTE format('SELECT count(*) FROM nexus_adopt.%I', v_table) INTO v_rows;
    INSERT INTO nexus_adopt.conversions (step, rows, detail)
    VALUES ('set aside ' || v_table, v_rows, 'the predecessor''s table, kept as it was in nexus_adopt.' || v_table);
  END LOOP;

  -- The rows set aside are a record, not live data: no key of theirs may block
  -- deleting a member (their bridges' created_by had no ON DELETE action).
  FOR r IN SELECT k.conname, c.relname FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
           WHERE k.contype = 'f' AND c.relnamespace = 'nexus_adopt'::regnamespace LOOP
    EXECUTE format('ALTER TABLE nexus_adopt.%I DROP CONSTRAINT %I', r.relname, r.conname);
  END LOOP;

  DROP TRIGGER IF EXISTS on_auth_user_created ON auth.users;
END
$$;
