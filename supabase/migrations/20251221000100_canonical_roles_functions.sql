-- Roles are canonical wherever they are written (issue 25). member-admin
-- stored `brigged`, `Medic` and `Rescue` in those spellings, but SQL written
-- in the dashboard or by a script could store `brig`, `Brig` or `brigged `,
-- which nothing read as a brig. Now a trigger spells every write of
-- profiles.roles the one way, whoever writes it, and existing rows (adopted
-- ones included: 20251220000100 ran before this) are rewritten below.

-- The one spelling of a role: `brigged` (for brig or brigged), `Medic`,
-- `Rescue` in any case; any other role as written. Surrounding whitespace
-- never counts: shared/text_rules.py's WHITESPACE (tabs, newlines, no-break
-- and ideographic spaces), not only the space btrim() takes. Case is folded
-- for ASCII only (translate, not lower(): lower() follows the database's
-- locale, and a Turkish one has no lower-case `i` for `I`). shared/ranks.py
-- canonical_role is the same rule; the tests compare the two.
CREATE OR REPLACE FUNCTION public.canonical_role(p_role text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SET search_path = '' AS $$
  SELECT CASE translate(t.v, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz')
    WHEN 'brig' THEN 'brigged'
    WHEN 'brigged' THEN 'brigged'
    WHEN 'medic' THEN 'Medic'
    WHEN 'rescue' THEN 'Rescue'
    ELSE t.v END
  FROM (SELECT regexp_replace(p_role,
          '^[\u0009-\u000d\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+|[\u0009-\u000d\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+$',
          '', 'g') AS v) t
$$;

-- A member's roles as stored: each in its canonical spelling, blanks and
-- NULL elements dropped, each role once (case-insensitively, as member-admin
-- matches them), in the order first written. NULL is no roles.
CREATE OR REPLACE FUNCTION public.canonical_roles(p_roles text[]) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = '' AS $$
  SELECT coalesce(array_agg(d.role ORDER BY d.i), '{}')
  FROM (SELECT DISTINCT ON (lower(c.role)) c.role, c.i
          FROM (SELECT public.canonical_role(r) AS role, i
                  FROM unnest(p_roles) WITH ORDINALITY AS t(r, i)) c
         WHERE c.role <> ''
         ORDER BY lower(c.role), c.i) d
$$;

-- A brig in any spelling (also for rows written with triggers off).
CREATE OR REPLACE FUNCTION nexus_private.is_brigged(p_roles text[]) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = '' AS $$
  SELECT EXISTS (SELECT 1 FROM unnest(coalesce(p_roles, '{}')) r WHERE public.canonical_role(r) = 'brigged')
$$;

CREATE OR REPLACE FUNCTION nexus_private.profiles_roles_canonical() RETURNS trigger
LANGUAGE plpgsql SET search_path = '' AS $$
BEGIN
  NEW.roles := public.canonical_roles(NEW.roles);
  RETURN NEW;
END
$$;

-- BEFORE, so the row stored and the AFTER trigger that queues LiveKit's
-- follow-up (profiles_queue_livekit_access) both see the canonical roles: a
-- respelling of the same roles is no change and queues nothing.
CREATE TRIGGER profiles_roles_canonical
  BEFORE INSERT OR UPDATE OF roles ON public.profiles
  FOR EACH ROW EXECUTE FUNCTION nexus_private.profiles_roles_canonical();

-- Rows written before the rule. A member who held `brig` becomes brigged,
-- and the trigger above queues the job that takes them out of LiveKit.
UPDATE public.profiles SET roles = public.canonical_roles(roles)
 WHERE roles IS DISTINCT FROM public.canonical_roles(roles);

-- health: the caller's rank and brig, looked up before any of health's own
-- work (a member below founder, or brigged, costs this one lookup). NULL
-- for a member without a profile.
CREATE OR REPLACE FUNCTION public.health_clearance(p_user_id uuid) RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = '' AS $$
  SELECT jsonb_build_object('rank', p.rank, 'brigged', nexus_private.is_brigged(p.roles))
  FROM public.profiles p WHERE p.id = p_user_id
$$;

REVOKE ALL ON FUNCTION nexus_private.profiles_roles_canonical() FROM PUBLIC, anon, authenticated;
REVOKE ALL ON FUNCTION public.health_clearance(uuid) FROM PUBLIC, anon, authenticated;
GRANT EXECUTE ON FUNCTION public.canonical_roles(text[]) TO service_role;
GRANT EXECUTE ON FUNCTION public.health_clearance(uuid) TO service_role;
