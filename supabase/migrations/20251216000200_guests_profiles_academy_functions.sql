-- Guests, callsigns and the academy's rate limit: functions, triggers, and
-- the constraints and indexes built on them.

-- Every new auth user gets a profile at the bottom of the ladder, except a
-- guest (Supabase's anonymous sign-in): it gets one when it becomes a full
-- account (Supabase links an email to the same user and sets is_anonymous
-- false). A sign-up must never fail on its metadata: a callsign that breaks
-- the text rules, or that another member holds, is left out.
CREATE OR REPLACE FUNCTION public.handle_new_auth_user() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' AS $$
DECLARE
  v_callsign text := nullif(btrim(left(coalesce(NEW.raw_user_meta_data ->> 'callsign', ''), 64)), '');
BEGIN
  IF coalesce(NEW.is_anonymous, false) THEN
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

CREATE TRIGGER on_auth_user_made_permanent
  AFTER UPDATE OF is_anonymous ON auth.users
  FOR EACH ROW WHEN (OLD.is_anonymous AND NOT NEW.is_anonymous)
  EXECUTE FUNCTION public.handle_new_auth_user();

-- A callsign set or changed may not be one a grandfathered holder keeps
-- (the unique index below covers everyone else). Security definer: the
-- member changing their own callsign cannot read other profiles.
CREATE OR REPLACE FUNCTION public.profiles_callsign_unclaimed() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' AS $$
BEGIN
  IF TG_OP = 'INSERT' OR NEW.callsign IS DISTINCT FROM OLD.callsign THEN
    NEW.callsign_grandfathered := false;
  END IF;
  IF NEW.callsign IS NOT NULL AND NOT NEW.callsign_grandfathered AND EXISTS (
    SELECT 1 FROM public.profiles p
    WHERE p.callsign_grandfathered AND p.id <> NEW.id
      AND public.callsign_key(p.callsign) = public.callsign_key(NEW.callsign)
  ) THEN
    RAISE EXCEPTION 'another member holds this callsign'
      USING ERRCODE = 'unique_violation', CONSTRAINT = 'profiles_callsign_key';
  END IF;
  RETURN NEW;
END
$$;

CREATE TRIGGER profiles_callsign_unclaimed
  BEFORE INSERT OR UPDATE OF callsign ON public.profiles
  FOR EACH ROW EXECUTE FUNCTION public.profiles_callsign_unclaimed();

-- The 20251215 rule goes first (its successor comes below): it is NOT VALID, so
-- callsigns from before it may hold control characters, and the UPDATEs below
-- would be checked against it.
ALTER TABLE public.profiles DROP CONSTRAINT profiles_callsign_printable;

-- Guests got profiles until now. Those rows stay (flares, requests or
-- subscriptions from before the functions refused guests may reference
-- them, and deleting would cascade), but their callsigns go: a guest must
-- not keep a name from a member. RLS and the functions ignore guests anyway.
UPDATE public.profiles p SET callsign = NULL
FROM auth.users u WHERE u.id = p.id AND u.is_anonymous AND p.callsign IS NOT NULL;

-- Callsigns that collide today stay; the earliest holder of each is the one
-- the unique index covers.
UPDATE public.profiles p SET callsign_grandfathered = true
FROM (
  SELECT id, row_number() OVER (PARTITION BY public.callsign_key(callsign) ORDER BY created_at, id) AS nth
  FROM public.profiles WHERE callsign IS NOT NULL
) d
WHERE d.id = p.id AND d.nth > 1;

CREATE UNIQUE INDEX profiles_callsign_key ON public.profiles (public.callsign_key(callsign))
  WHERE callsign IS NOT NULL AND NOT callsign_grandfathered;
CREATE INDEX profiles_grandfathered_callsign_idx ON public.profiles (public.callsign_key(callsign))
  WHERE callsign_grandfathered;

-- The text rules for what members write and others see (shared/text.py).
-- NOT VALID: rows written before stay as they are; every new write is checked.
ALTER TABLE public.profiles
  ADD CONSTRAINT profiles_callsign_shown_plainly
  CHECK (callsign IS NULL OR public.text_is_shown_plainly(callsign)) NOT VALID;
ALTER TABLE public.flares
  ADD CONSTRAINT flares_location_shown_plainly CHECK (public.text_is_shown_plainly(location)) NOT VALID;

-- academy-request, now rate limited: at most p_rate_limit new requests per
-- member per p_rate_window_seconds (every request created counts, whatever
-- became of it). A refusal writes nothing; a repeat of an open request still
-- answers OPEN_REQUEST first, so a client retrying a lost answer learns its id.
DROP FUNCTION public.academy_request_create(uuid, uuid, integer);
CREATE OR REPLACE FUNCTION public.academy_request_create(
  p_user_id uuid, p_skill_id uuid, p_max_age_seconds integer,
  p_rate_limit integer DEFAULT 3, p_rate_window_seconds integer DEFAULT 600
) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' AS $$
DECLARE
  v_roles text[];
  v_callsign text;
  v_skill text;
  v_id uuid;
  v_existing uuid;
  v_status text;
  v_oldest timestamptz;
  v_notified integer;
BEGIN
  -- The row lock serialises one member's concurrent requests, so the count
  -- below cannot be raced past the limit.
  SELECT roles, callsign INTO v_roles, v_callsign FROM public.profiles WHERE id = p_user_id FOR UPDATE;
  IF NOT FOUND THEN
    RETURN jsonb_build_object('error', 'NO_PROFILE');
  END IF;
  IF nexus_private.is_brigged(v_roles) THEN
    RETURN jsonb_build_object('error', 'BRIGGED');
  END IF;
  SELECT name INTO v_skill FROM public.skills WHERE id = p_skill_id;
  IF NOT FOUND THEN
    RETURN jsonb_build_object('error', 'SKILL_NOT_FOUND');
  END IF;

  SELECT id, status INTO v_existing, v_status FROM public.instruction_requests
  WHERE cadet_id = p_user_id AND skill_id = p_skill_id
    AND (status = 'ACCEPTED' OR (status = 'PENDING' AND created_at > now() - make_interval(secs => p_max_age_seconds)));
  IF FOUND THEN
    RETURN jsonb_build_object('error', 'OPEN_REQUEST', 'requestId', v_existing, 'status', v_status);
  END IF;

  -- The p_rate_limit-th most recent request in the window: once it leaves
  -- the window, there is room for one more.
  SELECT created_at INTO v_oldest FROM public.instruction_requests
  WHERE cadet_id = p_user_id AND created_at > now() - make_interval(secs => p_rate_window_seconds)
  ORDER BY created_at DESC OFFSET greatest(p_rate_limit, 1) - 1 LIMIT 1;
  IF FOUND THEN
    RETURN jsonb_build_object('error', 'RATE_LIMITED', 'retryAfter', greatest(1, ceil(extract(epoch FROM
      v_oldest + make_interval(secs => p_rate_window_seconds) - now()))::integer));
  END IF;

  FOR attempt IN 1..3 LOOP
    -- A lapsed request the schedule has not expired yet must not block a new one.
    UPDATE public.instruction_requests
    SET status = 'EXPIRED', closed_at = now(), updated_at = now()
    WHERE cadet_id = p_user_id AND skill_id = p_skill_id AND status = 'PENDING'
      AND created_at <= now() - make_interval(secs => p_max_age_seconds);

    INSERT INTO public.instruction_requests (skill_id, cadet_id)
    VALUES (p_skill_id, p_user_id)
    ON CONFLICT (cadet_id, skill_id) WHERE status IN ('PENDING', 'ACCEPTED') DO NOTHING
    RETURNING id INTO v_id;
    EXIT WHEN v_id IS NOT NULL;

    SELECT id, status INTO v_existing, v_status FROM public.instruction_requests
    WHERE cadet_id = p_user_id AND skill_id = p_skill_id AND status IN ('PENDING', 'ACCEPTED');
    IF FOUND THEN
      RETURN jsonb_build_object('error', 'OPEN_REQUEST', 'requestId', v_existing, 'status', v_status);
    END IF;
  END LOOP;
  IF v_id IS NULL THEN
    RAISE EXCEPTION 'academy_request_create: open request kept changing' USING ERRCODE = '40001';
  END IF;

  -- Guides are shown the callsign only if it passes today's text rules.
  IF NOT public.text_is_shown_plainly(v_callsign) THEN
    v_callsign := NULL;
  END IF;
  INSERT INTO public.notification_queue (recipient_id, type, title, message, payload)
  SELECT c.user_id,
         'ACADEMY_REQUEST',
         'Training requested: ' || v_skill,
         coalesce(v_callsign, 'A cadet') || ' is looking for a guide in ' || v_skill || '.',
         jsonb_build_object('requestId', v_id, 'skillId', p_skill_id, 'skillName', v_skill,
                            'cadetId', p_user_id, 'cadetCallsign', v_callsign)
  FROM public.certifications c
  JOIN public.profiles p ON p.id = c.user_id
  WHERE c.skill_id = p_skill_id AND c.user_id <> p_user_id AND NOT nexus_private.is_brigged(p.roles);
  GET DIAGNOSTICS v_notified = ROW_COUNT;

  RETURN jsonb_build_object('requestId', v_id, 'status', 'PENDING', 'guidesNotified', v_notified);
END
$$;

REVOKE ALL ON FUNCTION public.handle_new_auth_user() FROM PUBLIC, anon, authenticated;
REVOKE ALL ON FUNCTION public.profiles_callsign_unclaimed() FROM PUBLIC, anon, authenticated;
REVOKE ALL ON FUNCTION public.academy_request_create(uuid, uuid, integer, integer, integer)
  FROM PUBLIC, anon, authenticated;
GRANT EXECUTE ON FUNCTION public.academy_request_create(uuid, uuid, integer, integer, integer) TO service_role;
