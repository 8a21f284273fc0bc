-- push-fanout, after each pass: forget what is finished and old.
--   deliveries      finished (sent, gone, failed, dead, cancelled) longer
--                   ago than the retention;
--   notifications   created longer ago than the retention and either read
--                   or with no delivery still open (pending or claimed):
--                   nothing will ever send them, including those whose
--                   recipient had no device, which the runbook's "pending"
--                   query (sent_at IS NULL) would otherwise list forever.
-- sent_at keeps its meaning (some device accepted it); nothing here sets it.
-- At most p_limit rows of each per call, so one pass stays short.
CREATE OR REPLACE FUNCTION public.push_purge_finished(p_older_than_days integer, p_limit integer DEFAULT 5000)
RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' AS $$
DECLARE
  v_cutoff timestamptz := now() - make_interval(days => greatest(p_older_than_days, 1));
  v_deliveries integer;
  v_notifications integer;
BEGIN
  DELETE FROM nexus_private.push_deliveries WHERE id IN (
    SELECT d.id FROM nexus_private.push_deliveries d
     WHERE d.status IN ('sent', 'gone', 'failed', 'dead', 'cancelled') AND d.updated_at < v_cutoff
     ORDER BY d.updated_at LIMIT greatest(p_limit, 0));
  GET DIAGNOSTICS v_deliveries = ROW_COUNT;

  -- Deleting a notification deletes its remaining deliveries (foreign key).
  DELETE FROM public.notification_queue WHERE id IN (
    SELECT n.id FROM public.notification_queue n
     WHERE n.created_at < v_cutoff
       AND (n.read_at IS NOT NULL OR NOT EXISTS (
             SELECT 1 FROM nexus_private.push_deliveries d
              WHERE d.notification_id = n.id AND d.status IN ('pending', 'claimed')))
     ORDER BY n.created_at LIMIT greatest(p_limit, 0));
  GET DIAGNOSTICS v_notifications = ROW_COUNT;

  RETURN jsonb_build_object('deliveries', v_deliveries, 'notifications', v_notifications);
END
$$;

REVOKE ALL ON FUNCTION public.push_purge_finished(integer, integer) FROM PUBLIC, anon, authenticated;
GRANT EXECUTE ON FUNCTION public.push_purge_finished(integer, integer) TO service_role;
