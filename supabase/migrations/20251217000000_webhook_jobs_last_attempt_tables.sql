-- When each webhook job was last attempted. Jobs are inserted by
-- livekit_webhook_ingest, which applies the event in the same transaction:
-- the insert is the first attempt, hence the default. The retry worker's
-- claim sets it for every later attempt (20251217000100).
ALTER TABLE nexus_private.livekit_webhook_jobs ADD COLUMN last_attempt_at timestamptz;
UPDATE nexus_private.livekit_webhook_jobs
   SET last_attempt_at = coalesce(locked_at, done_at, updated_at)
 WHERE attempt > 0;
ALTER TABLE nexus_private.livekit_webhook_jobs ALTER COLUMN last_attempt_at SET DEFAULT now();
