-- Issue 24: after adopting the predecessor's database nobody holds more than
-- an operator confirms. The conversion (20251220000100) holds ranks above
-- scout and the responder roles (Medic, Rescue) in nexus_adopt.holds, the
-- member living as scout without them; these functions are how `nexus admin`
-- lists and settles the holds, through the member-admin audit.
--
-- nexus_adopt exists only on an adopted database (and goes when the operator
-- drops it): every function checks for it first and otherwise has nothing to
-- list or settle.

-- What awaits confirmation (and what was settled), and the predecessor's
-- guests with their guest_expires_at.
CREATE OR REPLACE FUNCTION public.adoption_holds() RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = '' AS $$
BEGIN
  IF to_regclass('nexus_adopt.holds') IS NULL THEN
    RETURN jsonb_build_object('adopted', false, 'holds', '[]'::jsonb, 'guests', '[]'::jsonb);
  END IF;
  RETURN jsonb_build_object(
    'adopted', true,
    'holds', coalesce((
      SELECT jsonb_agg(jsonb_build_object(
               'userId', h.member_id, 'callsign', h.callsign, 'email', h.email,
               'heldRank', h.held_rank, 'heldRoles', to_jsonb(h.held_roles), 'heldSkills', to_jsonb(h.held_skills),
               'liveRank', h.live_rank, 'liveRoles', to_jsonb(h.live_roles),
               'status', h.status, 'settledAt', h.settled_at, 'auditId', h.audit_id,
               'memberExists', p.id IS NOT NULL)
             ORDER BY h.status <> 'pending', h.held_roles = '{}', h.callsign NULLS LAST, h.member_id)
      FROM nexus_adopt.holds h LEFT JOIN public.profiles p ON p.id = h.member_id), '[]'::jsonb),
    'guests', coalesce((
      SELECT jsonb_agg(jsonb_build_object(
               'userId', g.member_id, 'email', g.email, 'guestExpiresAt', g.guest_expires_at,
               -- every guest was a 24-hour account: one without an expiry is taken as expired
               'expired', g.guest_expires_at IS NULL OR g.guest_expires_at < now(),
               'memberExists', p.id IS NOT NULL)
             ORDER BY g.guest_expires_at NULLS FIRST, g.member_id)
      FROM nexus_adopt.guests g LEFT JOIN public.profiles p ON p.id = g.member_id), '[]'::jsonb));
END
$$;

-- `nexus admin hold confirm|decline USER`: an operator confirms what the
-- member held on the predecessor (their rank, their responder roles, added
-- back to the roles they live with, their certifications) or declines it
-- (they stay as they are).
-- Refused, with nothing written, when there is no hold, it is settled
-- already, the member is gone, or their rank or roles changed since the
-- adoption (the hold no longer describes them; change them with member-admin
-- instead). One audit row (action member.change, subject adoption.confirm
-- or adoption.decline), and the LiveKit access job as for any change.
CREATE OR REPLACE FUNCTION public.adoption_hold_settle(
  p_member_id uuid, p_confirm boolean, p_operator text, p_reason text
) RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' SET lock_timeout = '5s' AS $$
DECLARE
  v_refusal jsonb;
  v_hold record;
  v_member public.profiles%ROWTYPE;
  v_rank text;
  v_roles text[];
  v_audit bigint;
  v_job bigint;
BEGIN
  IF nullif(btrim(coalesce(p_reason, '')), '') IS NULL THEN
    RETURN jsonb_build_object('error', 'BAD_REQUEST', 'field', 'reason', 'message', 'a reason is required');
  END IF;
  -- What the audit can hold: the text rules others are shown by, and its lengths.
  IF char_length(btrim(p_reason)) > 500 OR NOT public.text_is_shown_plainly(btrim(p_reason)) THEN
    RETURN jsonb_build_object('error', 'BAD_REQUEST', 'field', 'reason',
                              'message', 'a reason is 1-500 characters others may be shown');
  END IF;
  IF char_length(btrim(coalesce(p_operator, ''))) > 120
     OR (btrim(coalesce(p_operator, '')) <> '' AND NOT public.text_is_shown_plainly(btrim(p_operator))) THEN
    RETURN jsonb_build_object('error', 'BAD_REQUEST', 'field', 'operator',
                              'message', 'an operator label is 1-120 characters others may be shown');
  END IF;
  IF p_confirm IS NULL THEN
    RETURN jsonb_build_object('error', 'BAD_REQUEST', 'field', 'confirm', 'message', 'confirm or decline');
  END IF;
  v_refusal := nexus_private.admin_actor_refusal(NULL, p_operator);
  IF v_refusal IS NOT NULL THEN
    RETURN v_refusal;
  END IF;
  IF to_regclass('nexus_adopt.holds') IS NULL THEN
    RETURN jsonb_build_object('error', 'NO_HOLD', 'message', 'this database holds no adoption record');
  END IF;
  -- The member first, as member_admin_change locks it: a concurrent change queues.
  SELECT * INTO v_member FROM public.profiles WHERE id = p_member_id FOR UPDATE;
  SELECT * INTO v_hold FROM nexus_adopt.holds WHERE member_id = p_member_id FOR UPDATE;
  IF NOT FOUND THEN
    RETURN jsonb_build_object('error', 'NO_HOLD', 'message', 'nothing of this member is held');
  END IF;
  IF v_hold.status <> 'pending' THEN
    RETURN jsonb_build_object('error', 'ALREADY_SETTLED', 'status', v_hold.status, 'auditId', v_hold.audit_id);
  END IF;
  IF v_member.id IS NULL THEN
    RETURN jsonb_build_object('error', 'MEMBER_DELETED', 'message', 'the member was deleted since the adoption');
  END IF;
  -- Roles compared as sets of canonical spellings: a later migration that only
  -- respells stored roles (public.canonical_role) is not a change.
  IF v_member.rank IS DISTINCT FROM v_hold.live_rank
     OR ARRAY(SELECT DISTINCT lower(public.canonical_role(r)) FROM unnest(v_member.roles) r
               WHERE public.canonical_role(r) <> '' ORDER BY 1)
        IS DISTINCT FROM
        ARRAY(SELECT DISTINCT lower(public.canonical_role(r)) FROM unnest(v_hold.live_roles) r
               WHERE public.canonical_role(r) <> '' ORDER BY 1) THEN
    RETURN jsonb_build_object('error', 'CHANGED_SINCE_ADOPTION',
                              'message', 'the member''s rank or roles changed since the adoption; use member-admin',
                              'rank', v_member.rank, 'roles', to_jsonb(v_member.roles));
  END IF;

  v_rank := v_member.rank;
  v_roles := v_member.roles;
  IF p_confirm THEN
    v_rank := coalesce(v_hold.held_rank, v_member.rank);
    v_roles := v_member.roles || ARRAY(SELECT r FROM unnest(v_hold.held_roles) WITH ORDINALITY AS t(r, i)
                                        WHERE r <> ALL (v_member.roles) ORDER BY i);
    UPDATE public.profiles SET rank = v_rank, roles = v_roles WHERE id = p_member_id;
    -- the certifications held: a guide again of each skill that still exists
    INSERT INTO public.certifications (user_id, skill_id)
    SELECT p_member_id, s FROM unnest(v_hold.held_skills) s
    WHERE EXISTS (SELECT 1 FROM public.skills k WHERE k.id = s)
    ON CONFLICT (user_id, skill_id) DO NOTHING;
  END IF;
  -- Settled before its audit row goes in, so the row does not settle it again
  -- (nexus_private.admin_audit_settles_adoption_hold).
  UPDATE nexus_adopt.holds SET status = CASE WHEN p_confirm THEN 'confirmed' ELSE 'declined' END,
                              settled_at = now()
  WHERE member_id = p_member_id;
  INSERT INTO public.admin_audit (actor, actor_id, actor_label, action, member_id, subject, before, after, reason)
  VALUES ('operator', NULL, btrim(p_operator), 'member.change', p_member_id,
          CASE WHEN p_confirm THEN 'adoption.confirm' ELSE 'adoption.decline' END,
          jsonb_build_object('rank', v_member.rank, 'roles', to_jsonb(v_member.roles)),
          jsonb_build_object('rank', v_rank, 'roles', to_jsonb(v_roles),
                             'held', jsonb_build_object('rank', v_hold.held_rank, 'roles', to_jsonb(v_hold.held_roles),
                                                        'skills', to_jsonb(v_hold.held_skills))),
          btrim(p_reason))
  RETURNING id INTO v_audit;
  UPDATE nexus_adopt.holds SET audit_id = v_audit WHERE member_id = p_member_id;
  SELECT id INTO v_job FROM nexus_private.livekit_access_jobs
   WHERE user_id = p_member_id AND room_name IS NULL AND status = 'pending';
  RETURN jsonb_build_object(
    'auditId', v_audit, 'userId', p_member_id, 'settled', CASE WHEN p_confirm THEN 'confirmed' ELSE 'declined' END,
    'rank', v_rank, 'roles', to_jsonb(v_roles),
    'before', jsonb_build_object('rank', v_member.rank, 'roles', to_jsonb(v_member.roles)),
    'changed', v_rank IS DISTINCT FROM v_member.rank OR v_roles IS DISTINCT FROM v_member.roles,
    'accessJobId', v_job);
END
$$;

-- Any later change of a held member's rank or roles through member-admin (or
-- `nexus admin member`) settles their hold: the member is now what someone
-- with the right to decide made them. The audit row that recorded the
-- change is the hold's record (audit_id).
CREATE OR REPLACE FUNCTION nexus_private.admin_audit_settles_adoption_hold() RETURNS trigger
LANGUAGE plpgsql SET search_path = '' AS $$
BEGIN
  IF to_regclass('nexus_adopt.holds') IS NOT NULL THEN
    EXECUTE 'UPDATE nexus_adopt.holds SET status = ''settled'', settled_at = now(), audit_id = $1 '
            'WHERE member_id = $2 AND status = ''pending'''
      USING NEW.id, NEW.member_id;
  END IF;
  RETURN NULL;
END
$$;

CREATE TRIGGER admin_audit_settles_adoption_hold
  AFTER INSERT ON public.admin_audit
  FOR EACH ROW WHEN (NEW.action = 'member.change' AND NEW.member_id IS NOT NULL
                     AND NEW.before IS DISTINCT FROM NEW.after)
  EXECUTE FUNCTION nexus_private.admin_audit_settles_adoption_hold();

REVOKE ALL ON FUNCTION public.adoption_holds() FROM PUBLIC, anon, authenticated;
REVOKE ALL ON FUNCTION public.adoption_hold_settle(uuid, boolean, text, text) FROM PUBLIC, anon, authenticated;
REVOKE ALL ON FUNCTION nexus_private.admin_audit_settles_adoption_hold() FROM PUBLIC, anon, authenticated;
GRANT EXECUTE ON FUNCTION public.adoption_holds() TO service_role;
GRANT EXECUTE ON FUNCTION public.adoption_hold_settle(uuid, boolean, text, text) TO service_role;
