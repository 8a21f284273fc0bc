-- LiveKit converges to the database whatever the order of events (issue 25).
--
-- A rights version per member and per room: every change that can alter what
-- a member may do in a room (rank, roles, the profile itself; a net's
-- thresholds, code or existence) takes the next value of one sequence. An
-- access job reads the version with the rights it applies
-- (livekit_access_rights) and hands back, when it reports, the version of
-- every participant it changed in LiveKit; a version that moved meanwhile
-- means it may have written rights older than the database's, so the report
-- queues a `recheck` job for that member and room. The version of a
-- (member, room) pair is the greater of the two: both come from one sequence.
CREATE SEQUENCE nexus_private.livekit_rights_version_seq;

CREATE TABLE nexus_private.livekit_rights_versions (
  -- 'member:<uuid>' or 'room:<room name>'
  subject text PRIMARY KEY CHECK (subject ~ '^(member|room):'),
  version bigint NOT NULL
);
COMMENT ON TABLE nexus_private.livekit_rights_versions IS
  'Per member and per room: the sequence value of the last change to LiveKit rights (issue 25)';

-- recheck: a job wrote rights that changed before it reported.
ALTER TABLE nexus_private.livekit_access_jobs DROP CONSTRAINT livekit_access_jobs_cause_check;
ALTER TABLE nexus_private.livekit_access_jobs
  ADD CONSTRAINT livekit_access_jobs_cause_check CHECK (cause IN ('profile', 'net', 'join', 'recheck'));
-- the claim skips a target whose job is processing: found by member, and by room for room jobs
CREATE INDEX livekit_access_jobs_processing_member_idx ON nexus_private.livekit_access_jobs (user_id)
  WHERE status = 'processing';
