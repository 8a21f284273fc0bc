-- When the presence reconciler last asked LiveKit about each room that still
-- has something open. livekit_presence_stale_rooms serves the rooms asked
-- least recently first, so no set of rooms that stays stale run after run
-- (members really connected for hours, empty rooms LiveKit keeps alive, or
-- anything while LiveKit is down) can hold the batch and starve the rest.
CREATE TABLE nexus_private.livekit_reconcile_checks (
  room_name text PRIMARY KEY,
  checked_at timestamptz NOT NULL
);
