-- Deleting a member: what the foreign keys cannot express, run before the
-- profile row goes (however it goes: the auth server's hard delete cascading
-- from auth.users, its soft delete, or plain SQL on either table).

-- Before a profile is deleted: open pods the member guides or attends end (their
-- rooms' deletes fall due at once), requests they took part in are closed, and
-- what was theirs alone goes: requests no guide ever took, and their rows in the
-- predecessor's record (nexus_adopt). The foreign keys then do the rest.
CREATE OR REPLACE FUNCTION nexus_private.profiles_before_delete() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' AS $$
DECLARE
  v_pod text;
  r record;
BEGIN
  FOR v_pod IN SELECT p.id FROM public.sim_pods p
               WHERE p.ended_at IS NULL AND (p.cadet_id = OLD.id OR p.guide_id = OLD.id)
               ORDER BY p.id FOR UPDATE LOOP
    PERFORM nexus_private.end_sim_pod(v_pod, 'MEMBER_DELETED');
  END LOOP;
  -- An accepted request whose pod is gone or ended elsewhere: it cannot stay
  -- ACCEPTED without its guide.
  UPDATE public.instruction_requests
  SET status = 'COMPLETED', closed_at = now(), updated_at = now()
  WHERE status = 'ACCEPTED' AND (cadet_id = OLD.id OR guide_id = OLD.id);
  -- Never accepted: no guide ever took part (a guide deleted earlier leaves guide_id NULL on
  -- a request whose pod still carries its room's delete, so that is not the test).
  DELETE FROM public.instruction_requests WHERE cadet_id = OLD.id AND accepted_at IS NULL AND sim_pod_id IS NULL;

  IF to_regnamespace('nexus_adopt') IS NOT NULL THEN
    FOR r IN
      SELECT c.table_name, c.column_name
      FROM information_schema.columns c
      WHERE c.table_schema = 'nexus_adopt' AND c.data_type = 'uuid'
        AND (c.column_name IN ('user_id', 'sender_id', 'recipient_id', 'cadet_id', 'guide_id',
                               'created_by', 'certified_by')
             OR (c.table_name = 'profiles' AND c.column_name = 'id'))
      ORDER BY c.table_name, c.column_name
    LOOP
      EXECUTE format('DELETE FROM nexus_adopt.%I WHERE %I = $1', r.table_name, r.column_name) USING OLD.id;
    END LOOP;
  END IF;
  RETURN OLD;
END
$$;

CREATE TRIGGER profiles_before_delete
  BEFORE DELETE ON public.profiles
  FOR EACH ROW EXECUTE FUNCTION nexus_private.profiles_before_delete();

-- The auth server's soft delete keeps the auth.users row and sets deleted_at:
-- that member is deleted all the same, so their profile goes.
CREATE OR REPLACE FUNCTION nexus_private.auth_user_soft_deleted() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' AS $$
BEGIN
  DELETE FROM public.profiles WHERE id = NEW.id;
  RETURN NEW;
END
$$;

CREATE TRIGGER on_auth_user_soft_deleted
  AFTER UPDATE OF deleted_at ON auth.users
  FOR EACH ROW WHEN (OLD.deleted_at IS NULL AND NEW.deleted_at IS NOT NULL)
  EXECUTE FUNCTION nexus_private.auth_user_soft_deleted();

-- Those soft-deleted before this trigger existed (a member of this project, or of the
-- predecessor's adopted by 20251220000100, which made a profile for every user): deleted
-- all the same.
DELETE FROM public.profiles p USING auth.users u WHERE u.id = p.id AND u.deleted_at IS NOT NULL;

-- A user with deleted_at set counts as deleted, so it gets no profile: neither a row that
-- arrives already deleted (an import, a restore) nor a soft-deleted guest whom the admin API
-- later makes permanent (confirming an email clears is_anonymous). Otherwise as 20251216000200.
CREATE OR REPLACE FUNCTION public.handle_new_auth_user() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' AS $$
DECLARE
  v_callsign text := nullif(btrim(left(coalesce(NEW.raw_user_meta_data ->> 'callsign', ''), 64)), '');
BEGIN
  IF coalesce(NEW.is_anonymous, false) OR NEW.deleted_at IS NOT NULL THEN
    RETURN NEW;
  END IF;
  IF NOT public.text_is_shown_plainly(v_callsign) THEN
    v_callsign := NULL;
  END IF;
  BEGIN
    INSERT INTO public.profiles (id, callsign) VALUES (NEW.id, v_callsign) ON CONFLICT (id) DO NOTHING;
  EXCEPTION WHEN unique_violation OR check_violation THEN
    INSERT INTO public.profiles (id) VALUES (NEW.id) ON CONFLICT (id) DO NOTHING;
  END;
  RETURN NEW;
END
$$;

REVOKE ALL ON FUNCTION public.handle_new_auth_user() FROM PUBLIC, anon, authenticated;
REVOKE ALL ON FUNCTION nexus_private.profiles_before_delete() FROM PUBLIC, anon, authenticated;
REVOKE ALL ON FUNCTION nexus_private.auth_user_soft_deleted() FROM PUBLIC, anon, authenticated;
