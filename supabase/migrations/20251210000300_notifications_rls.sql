-- Row-level security for notifications, then its policies. Members read and
-- delete only their own push subscriptions (creating one goes through
-- notifications-subscribe, which checks the endpoint our servers will POST
-- to), read only their own notifications and may only mark them read. Flares
-- are read by their sender and by responders. Deliveries are the service
-- role's alone.
ALTER TABLE public.push_subscriptions ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.notification_queue ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.flares ENABLE ROW LEVEL SECURITY;
ALTER TABLE nexus_private.push_deliveries ENABLE ROW LEVEL SECURITY;

-- Table privileges first (the shim reproduces Supabase's default grants on public).
REVOKE ALL ON public.push_subscriptions FROM anon;
REVOKE INSERT, UPDATE, TRUNCATE, REFERENCES, TRIGGER ON public.push_subscriptions FROM authenticated;
GRANT SELECT, DELETE ON public.push_subscriptions TO authenticated;

REVOKE ALL ON public.notification_queue FROM anon;
REVOKE INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON public.notification_queue FROM authenticated;
GRANT SELECT ON public.notification_queue TO authenticated;
GRANT UPDATE (read_at) ON public.notification_queue TO authenticated;

REVOKE ALL ON public.flares FROM anon;
REVOKE INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON public.flares FROM authenticated;
GRANT SELECT ON public.flares TO authenticated;

REVOKE ALL ON nexus_private.push_deliveries FROM PUBLIC, anon, authenticated;
GRANT SELECT, INSERT, UPDATE, DELETE ON nexus_private.push_deliveries TO service_role;

CREATE POLICY push_subscriptions_anon_none ON public.push_subscriptions
  AS RESTRICTIVE FOR ALL TO anon USING (false) WITH CHECK (false);
CREATE POLICY push_subscriptions_select_own ON public.push_subscriptions
  FOR SELECT TO authenticated USING (user_id = (SELECT auth.uid()));
CREATE POLICY push_subscriptions_delete_own ON public.push_subscriptions
  FOR DELETE TO authenticated USING (user_id = (SELECT auth.uid()));
CREATE POLICY push_subscriptions_service_all ON public.push_subscriptions
  FOR ALL TO service_role USING (true) WITH CHECK (true);

CREATE POLICY notification_queue_anon_none ON public.notification_queue
  AS RESTRICTIVE FOR ALL TO anon USING (false) WITH CHECK (false);
CREATE POLICY notification_queue_select_own ON public.notification_queue
  FOR SELECT TO authenticated USING (recipient_id = (SELECT auth.uid()));
CREATE POLICY notification_queue_mark_read_own ON public.notification_queue
  FOR UPDATE TO authenticated
  USING (recipient_id = (SELECT auth.uid())) WITH CHECK (recipient_id = (SELECT auth.uid()));
CREATE POLICY notification_queue_service_all ON public.notification_queue
  FOR ALL TO service_role USING (true) WITH CHECK (true);

CREATE POLICY flares_anon_none ON public.flares
  AS RESTRICTIVE FOR ALL TO anon USING (false) WITH CHECK (false);
CREATE POLICY flares_select_sender_or_responder ON public.flares
  FOR SELECT TO authenticated USING (
    sender_id = (SELECT auth.uid())
    OR EXISTS (
      SELECT 1 FROM public.profiles p
      WHERE p.id = (SELECT auth.uid())
        AND EXISTS (SELECT 1 FROM unnest(p.roles) r WHERE lower(r) IN ('rescue', 'medic'))
    )
  );
CREATE POLICY flares_service_all ON public.flares
  FOR ALL TO service_role USING (true) WITH CHECK (true);

CREATE POLICY push_deliveries_anon_none ON nexus_private.push_deliveries
  AS RESTRICTIVE FOR ALL TO anon USING (false) WITH CHECK (false);
CREATE POLICY push_deliveries_authenticated_none ON nexus_private.push_deliveries
  AS RESTRICTIVE FOR ALL TO authenticated USING (false) WITH CHECK (false);
CREATE POLICY push_deliveries_service_all ON nexus_private.push_deliveries
  FOR ALL TO service_role USING (true) WITH CHECK (true);
