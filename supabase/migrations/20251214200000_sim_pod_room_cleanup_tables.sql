-- A pod that ended (early or on expiry) still needs its LiveKit room deleted
-- once more after every token that could re-create it has lapsed: LiveKit
-- re-creates a room for anyone joining with a valid token. The expiry
-- schedule deletes the rooms whose delete is due and records each delete.
ALTER TABLE public.sim_pods
  -- when LiveKit last confirmed the room gone (deleted, or already absent)
  ADD COLUMN room_deleted_at timestamptz,
  -- when the schedule should delete the room next; NULL once nothing could re-create it
  ADD COLUMN room_delete_due_at timestamptz,
  ADD CONSTRAINT sim_pods_room_delete_only_when_ended CHECK (room_delete_due_at IS NULL OR ended_at IS NOT NULL);

-- the schedule's scan: rooms of ended pods still to delete, by due time
CREATE INDEX sim_pods_room_delete_due_idx ON public.sim_pods (room_delete_due_at)
  WHERE room_delete_due_at IS NOT NULL;

-- Pods that ended before this migration: their rooms were never deleted
-- after an early end, so each recent one gets a delete on the next run.
UPDATE public.sim_pods SET room_delete_due_at = now()
WHERE ended_at IS NOT NULL AND ended_at > now() - interval '1 day';
