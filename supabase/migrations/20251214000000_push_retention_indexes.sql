-- Retention for push deliveries and notifications: the indexes the purge
-- (next migration) walks, oldest first, so a run touches only what it deletes.
CREATE INDEX push_deliveries_finished_idx ON nexus_private.push_deliveries (updated_at)
  WHERE status IN ('sent', 'gone', 'failed', 'dead', 'cancelled');
CREATE INDEX notification_queue_created_idx ON public.notification_queue (created_at);
