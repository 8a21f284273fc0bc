-- Functions and triggers for members and voice nets.

CREATE OR REPLACE FUNCTION public.rank_level(p_rank text) RETURNS integer
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SET search_path = '' AS $$
  SELECT array_position(ARRAY['vagrant', 'scout', 'voyager', 'founder', 'pioneer'], p_rank) - 1
$$;

CREATE OR REPLACE FUNCTION public.touch_updated_at() RETURNS trigger
LANGUAGE plpgsql SET search_path = '' AS $$
BEGIN
  NEW.updated_at := now();
  RETURN NEW;
END
$$;

CREATE TRIGGER profiles_touch_updated_at
  BEFORE UPDATE ON public.profiles
  FOR EACH ROW EXECUTE FUNCTION public.touch_updated_at();

-- Every new auth user gets a profile at the bottom of the ladder.
CREATE OR REPLACE FUNCTION public.handle_new_auth_user() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' AS $$
BEGIN
  INSERT INTO public.profiles (id, callsign)
  VALUES (
    NEW.id,
    nullif(left(coalesce(NEW.raw_user_meta_data ->> 'callsign', ''), 64), '')
  )
  ON CONFLICT (id) DO NOTHING;
  RETURN NEW;
END
$$;

CREATE TRIGGER on_auth_user_created
  AFTER INSERT ON auth.users
  FOR EACH ROW EXECUTE FUNCTION public.handle_new_auth_user();

-- Everything livekit-token needs to decide, in one round trip: the caller's
-- rank and roles (read now, not from their token) and the net's thresholds.
CREATE OR REPLACE FUNCTION public.livekit_token_context(p_user_id uuid, p_room text) RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = '' AS $$
  SELECT jsonb_build_object(
    'profile', (
      SELECT jsonb_build_object('rank', p.rank, 'roles', to_jsonb(p.roles), 'callsign', p.callsign)
      FROM public.profiles p WHERE p.id = p_user_id
    ),
    'net', (
      SELECT jsonb_build_object(
        'id', n.id, 'code', n.code, 'label', n.label,
        'min_rank_to_join', n.min_rank_to_join,
        'min_rank_to_rx', n.min_rank_to_rx,
        'min_rank_to_tx', n.min_rank_to_tx)
      FROM public.voice_nets n WHERE n.code = p_room
    )
  )
$$;

REVOKE ALL ON FUNCTION public.handle_new_auth_user() FROM PUBLIC, anon, authenticated;
REVOKE ALL ON FUNCTION public.touch_updated_at() FROM PUBLIC, anon, authenticated;
REVOKE ALL ON FUNCTION public.livekit_token_context(uuid, text) FROM PUBLIC, anon, authenticated;
GRANT EXECUTE ON FUNCTION public.livekit_token_context(uuid, text) TO service_role;
