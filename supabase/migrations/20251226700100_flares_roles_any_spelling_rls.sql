-- Reading a flare as a responder (last in 20251216000300_guests_rls.sql): Rescue or Medic, and
-- not brigged, in any spelling, as the fan-out (20251226700000). public.canonical_role is
-- executable by every role (IMMUTABLE, not SECURITY DEFINER).
DROP POLICY flares_select_sender_or_responder ON public.flares;
CREATE POLICY flares_select_sender_or_responder ON public.flares
  FOR SELECT TO authenticated USING (
    sender_id = (SELECT auth.uid())
    OR EXISTS (
      SELECT 1 FROM public.profiles p
      WHERE p.id = (SELECT auth.uid())
        AND EXISTS (SELECT 1 FROM unnest(p.roles) r WHERE public.canonical_role(r) IN ('Rescue', 'Medic'))
        AND NOT EXISTS (SELECT 1 FROM unnest(p.roles) r WHERE public.canonical_role(r) = 'brigged')
    )
  );
