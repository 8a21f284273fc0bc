-- Deleting a member always succeeds, whatever they hold (docs/schema-contract.md,
-- "Deleting a member"). What others rely on stays without them: a sim pod keeps its
-- row (the expiry schedule still has to delete its LiveKit room) and a request a
-- guide took keeps its history, each with the deleted member's id set to NULL.
-- Before, both ids of a pod and a request's cadet cascaded (the pod row and its
-- room's pending delete went with either member) and a guide's id was set to NULL
-- on an ACCEPTED request, which its CHECK refuses: the whole deletion failed.

ALTER TABLE public.sim_pods ALTER COLUMN cadet_id DROP NOT NULL;
ALTER TABLE public.sim_pods ALTER COLUMN guide_id DROP NOT NULL;
ALTER TABLE public.sim_pods DROP CONSTRAINT sim_pods_cadet_id_fkey;
ALTER TABLE public.sim_pods ADD CONSTRAINT sim_pods_cadet_id_fkey
  FOREIGN KEY (cadet_id) REFERENCES public.profiles (id) ON DELETE SET NULL;
ALTER TABLE public.sim_pods DROP CONSTRAINT sim_pods_guide_id_fkey;
ALTER TABLE public.sim_pods ADD CONSTRAINT sim_pods_guide_id_fkey
  FOREIGN KEY (guide_id) REFERENCES public.profiles (id) ON DELETE SET NULL;
-- A pod ended because one of its two members was deleted.
ALTER TABLE public.sim_pods DROP CONSTRAINT sim_pods_end_reason_check;
ALTER TABLE public.sim_pods ADD CONSTRAINT sim_pods_end_reason_check
  CHECK (end_reason IN ('EXPIRED', 'ROOM_FINISHED', 'CANCELLED', 'MEMBER_DELETED'));

ALTER TABLE public.instruction_requests ALTER COLUMN cadet_id DROP NOT NULL;
ALTER TABLE public.instruction_requests DROP CONSTRAINT instruction_requests_cadet_id_fkey;
ALTER TABLE public.instruction_requests ADD CONSTRAINT instruction_requests_cadet_id_fkey
  FOREIGN KEY (cadet_id) REFERENCES public.profiles (id) ON DELETE SET NULL;
