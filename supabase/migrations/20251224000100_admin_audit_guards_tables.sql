-- The audit is what it says (issue 24): what it records of an operator's
-- label and a reason follows the text rules others are shown by
-- (public.text_is_shown_plainly: no control, format or separator characters,
-- so no terminal escape when read in psql), and it records an operator's
-- callsign change (`nexus admin callsign`). NOT VALID: rows already written
-- stay as they are (nothing may change them).
ALTER TABLE public.admin_audit
  ADD CONSTRAINT admin_audit_reason_shown_plainly CHECK (public.text_is_shown_plainly(reason)) NOT VALID,
  ADD CONSTRAINT admin_audit_label_shown_plainly
    CHECK (actor_label IS NULL OR public.text_is_shown_plainly(actor_label)) NOT VALID;

ALTER TABLE public.admin_audit DROP CONSTRAINT admin_audit_action_check;
ALTER TABLE public.admin_audit ADD CONSTRAINT admin_audit_action_check
  CHECK (action IN ('member.change', 'member.callsign', 'net.create', 'net.set', 'skill.add', 'certify'));

COMMENT ON TABLE public.admin_audit IS
  'Append-only: every admin change (who, whom, before, after, why), written only by the SECURITY DEFINER change functions; nexus db smoke checks no API role may insert, update or delete';
