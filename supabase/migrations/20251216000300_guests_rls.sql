-- Guests (Supabase anonymous sign-ins: role authenticated, JWT claim
-- is_anonymous true) read and write nothing of ours. One restrictive policy
-- per table in `public`, on top of the members' permissive ones. A token
-- without the claim is a full account, as in shared/auth.py; any value but
-- false marks a guest. (nexus_private is not exposed, and refuses
-- authenticated altogether.)

CREATE POLICY profiles_guests_none ON public.profiles
  AS RESTRICTIVE FOR ALL TO authenticated
  USING (coalesce((SELECT auth.jwt()) -> 'is_anonymous', 'false'::jsonb) = 'false'::jsonb)
  WITH CHECK (coalesce((SELECT auth.jwt()) -> 'is_anonymous', 'false'::jsonb) = 'false'::jsonb);
CREATE POLICY voice_nets_guests_none ON public.voice_nets
  AS RESTRICTIVE FOR ALL TO authenticated
  USING (coalesce((SELECT auth.jwt()) -> 'is_anonymous', 'false'::jsonb) = 'false'::jsonb)
  WITH CHECK (coalesce((SELECT auth.jwt()) -> 'is_anonymous', 'false'::jsonb) = 'false'::jsonb);
CREATE POLICY push_subscriptions_guests_none ON public.push_subscriptions
  AS RESTRICTIVE FOR ALL TO authenticated
  USING (coalesce((SELECT auth.jwt()) -> 'is_anonymous', 'false'::jsonb) = 'false'::jsonb)
  WITH CHECK (coalesce((SELECT auth.jwt()) -> 'is_anonymous', 'false'::jsonb) = 'false'::jsonb);
CREATE POLICY notification_queue_guests_none ON public.notification_queue
  AS RESTRICTIVE FOR ALL TO authenticated
  USING (coalesce((SELECT auth.jwt()) -> 'is_anonymous', 'false'::jsonb) = 'false'::jsonb)
  WITH CHECK (coalesce((SELECT auth.jwt()) -> 'is_anonymous', 'false'::jsonb) = 'false'::jsonb);
CREATE POLICY flares_guests_none ON public.flares
  AS RESTRICTIVE FOR ALL TO authenticated
  USING (coalesce((SELECT auth.jwt()) -> 'is_anonymous', 'false'::jsonb) = 'false'::jsonb)
  WITH CHECK (coalesce((SELECT auth.jwt()) -> 'is_anonymous', 'false'::jsonb) = 'false'::jsonb);
CREATE POLICY voice_presence_guests_none ON public.voice_presence
  AS RESTRICTIVE FOR ALL TO authenticated
  USING (coalesce((SELECT auth.jwt()) -> 'is_anonymous', 'false'::jsonb) = 'false'::jsonb)
  WITH CHECK (coalesce((SELECT auth.jwt()) -> 'is_anonymous', 'false'::jsonb) = 'false'::jsonb);
CREATE POLICY livekit_rooms_guests_none ON public.livekit_rooms
  AS RESTRICTIVE FOR ALL TO authenticated
  USING (coalesce((SELECT auth.jwt()) -> 'is_anonymous', 'false'::jsonb) = 'false'::jsonb)
  WITH CHECK (coalesce((SELECT auth.jwt()) -> 'is_anonymous', 'false'::jsonb) = 'false'::jsonb);
CREATE POLICY livekit_recordings_guests_none ON public.livekit_recordings
  AS RESTRICTIVE FOR ALL TO authenticated
  USING (coalesce((SELECT auth.jwt()) -> 'is_anonymous', 'false'::jsonb) = 'false'::jsonb)
  WITH CHECK (coalesce((SELECT auth.jwt()) -> 'is_anonymous', 'false'::jsonb) = 'false'::jsonb);
CREATE POLICY voice_net_bridges_guests_none ON public.voice_net_bridges
  AS RESTRICTIVE FOR ALL TO authenticated
  USING (coalesce((SELECT auth.jwt()) -> 'is_anonymous', 'false'::jsonb) = 'false'::jsonb)
  WITH CHECK (coalesce((SELECT auth.jwt()) -> 'is_anonymous', 'false'::jsonb) = 'false'::jsonb);
CREATE POLICY skills_guests_none ON public.skills
  AS RESTRICTIVE FOR ALL TO authenticated
  USING (coalesce((SELECT auth.jwt()) -> 'is_anonymous', 'false'::jsonb) = 'false'::jsonb)
  WITH CHECK (coalesce((SELECT auth.jwt()) -> 'is_anonymous', 'false'::jsonb) = 'false'::jsonb);
CREATE POLICY certifications_guests_none ON public.certifications
  AS RESTRICTIVE FOR ALL TO authenticated
  USING (coalesce((SELECT auth.jwt()) -> 'is_anonymous', 'false'::jsonb) = 'false'::jsonb)
  WITH CHECK (coalesce((SELECT auth.jwt()) -> 'is_anonymous', 'false'::jsonb) = 'false'::jsonb);
CREATE POLICY instruction_requests_guests_none ON public.instruction_requests
  AS RESTRICTIVE FOR ALL TO authenticated
  USING (coalesce((SELECT auth.jwt()) -> 'is_anonymous', 'false'::jsonb) = 'false'::jsonb)
  WITH CHECK (coalesce((SELECT auth.jwt()) -> 'is_anonymous', 'false'::jsonb) = 'false'::jsonb);
CREATE POLICY sim_pods_guests_none ON public.sim_pods
  AS RESTRICTIVE FOR ALL TO authenticated
  USING (coalesce((SELECT auth.jwt()) -> 'is_anonymous', 'false'::jsonb) = 'false'::jsonb)
  WITH CHECK (coalesce((SELECT auth.jwt()) -> 'is_anonymous', 'false'::jsonb) = 'false'::jsonb);

-- Members in the brig are not responders: the fan-out already skips them,
-- and now so does reading flares. A sender still reads their own.
DROP POLICY flares_select_sender_or_responder ON public.flares;
CREATE POLICY flares_select_sender_or_responder ON public.flares
  FOR SELECT TO authenticated USING (
    sender_id = (SELECT auth.uid())
    OR EXISTS (
      SELECT 1 FROM public.profiles p
      WHERE p.id = (SELECT auth.uid())
        AND EXISTS (SELECT 1 FROM unnest(p.roles) r WHERE lower(r) IN ('rescue', 'medic'))
        AND NOT EXISTS (SELECT 1 FROM unnest(p.roles) r WHERE lower(r) = 'brigged')
    )
  );
