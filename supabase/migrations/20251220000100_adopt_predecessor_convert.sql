-- Adopting the predecessor's database, step 2 of 2 (step 1 is
-- 20251208000000_adopt_predecessor_set_aside.sql). It runs after every other
-- migration of its time, so it converts into the schema as it stands then;
-- on the predecessor's database it runs in the same transaction as step 1
-- and everything between (nexus db adopt), so nothing here may fail on data.
--
-- On an empty database (nothing was set aside) only the last statement runs.
-- Otherwise every row set aside in nexus_adopt is converted into our tables,
-- keeping its meaning, and each conversion's row count is recorded in
-- nexus_adopt.conversions (nexus db adopt prints them); every row set aside
-- that has no row in ours is counted per table and reason in
-- nexus_adopt.not_adopted. Free text carried over (callsigns, net labels,
-- skill names and descriptions, notification titles and messages, flare
-- locations) follows the text rules members write by, with a neutral
-- fallback; no collision (skill names, callsigns, endpoints) can abort it.
--   profiles       rank NULL/empty -> vagrant, any case lower-cased, a value
--                  that names no rank -> vagrant; roles NULL -> {}, brig/brigged
--                  (any case) -> brigged, medic -> Medic, rescue -> Rescue,
--                  other names in the spelling first written; callsigns
--                  cleaned to our rule (control characters become spaces,
--                  blank -> none, at most 64 characters). Members set their
--                  own rank and roles on the predecessor: ranks above scout and
--                  the responder roles (Medic, Rescue) are held in
--                  nexus_adopt.holds, the member living as scout without them
--                  until an operator confirms (nexus admin holds; issue 24).
--                  The predecessor's guests (is_guest) become vagrants without
--                  a callsign, listed in nexus_adopt.guests; anonymous sign-ins
--                  (guests of ours) vagrants with nothing held.
--   voice_nets     thresholds trimmed and lower-cased, empty -> vagrant; join
--                  NULL -> receive, else scout; receive NULL -> the join;
--                  transmit NULL -> scout; a name that is no rank let everyone
--                  in -> vagrant. No code -> one derived from the id; a code
--                  held by several nets stays on the oldest, the others get
--                  a suffix from their id.
--   bridges        one per unordered pair (the oldest), self-bridges removed.
--   push keys      standard base64 -> unpadded base64url, the same bytes; an
--                  endpoint held twice once trimmed goes to the newest.
--   notifications  types mapped to ours, missing title derived from the type,
--                  missing payload {}; history: not pushed, and their
--                  retention starts now (the old time is kept in the payload).
--   flares         type -> flare_type; a sender that is gone stays gone.
--   skills         a name held twice (once cleaned, cut to 120, any case) is numbered.
--   certifications anyone could write them (RLS off): held in nexus_adopt.holds
--                  (held_skills), the member a guide of none until confirmed.
--   requests       PENDING stays (our expiry applies); ACTIVE -> COMPLETED now,
--                  guide kept, old pod id cleared; of several pending for one
--                  cadet and skill the newest stays, the others CANCELLED.
--   presence       every row becomes closed history.
-- Their columns that ours lack (profiles.email, voice_nets.type, ...) are put
-- back on our tables with their values, and recorded as foreign. Their
-- tables' foreign keys to the tables set aside now point at ours. Their
-- tables left in public are closed to anon and to guests.
DO $$
DECLARE
  v_ranks constant text[] := ARRAY['vagrant', 'scout', 'voyager', 'founder', 'pioneer'];
  v_ours constant text[] := ARRAY['profiles', 'voice_nets', 'voice_net_bridges', 'voice_presence',
                                  'push_subscriptions', 'notification_queue', 'flares', 'skills',
                                  'certifications', 'instruction_requests'];
  v_keys constant jsonb := '{"profiles": "id", "voice_nets": "id", "voice_net_bridges": "id",
    "notification_queue": "id", "flares": "id", "skills": "id", "instruction_requests": "id",
    "certifications": "user_id,skill_id", "push_subscriptions": "endpoint",
    "voice_presence": "room_name,participant_sid"}';
  v_n bigint;
  v_m bigint;
  v_def text;
  v_join text;
  r record;
BEGIN
  IF to_regclass('nexus_adopt.profiles') IS NULL THEN
    RETURN;  -- nothing was set aside
  END IF;

  -- Free text carried over follows the rules callsigns follow (shared/text.py,
  -- public.text_is_shown_plainly): a character others must not be shown
  -- becomes a space, runs of White_Space one space, the ends trimmed, cut to
  -- the column's length; what is left blank or still breaks the rule is the
  -- neutral fallback. The conversion cannot fail on a member's text.
  CREATE OR REPLACE FUNCTION pg_temp.adopt_clean(p_text text, p_max integer, p_fallback text) RETURNS text
  LANGUAGE sql STABLE SET search_path = '' AS $clean$
    SELECT CASE WHEN v.t <> '' AND public.text_is_shown_plainly(v.t) THEN v.t ELSE p_fallback END
    FROM (SELECT btrim(left(btrim(regexp_replace(
            (SELECT string_agg(CASE WHEN public.text_is_shown_plainly('a' || c) THEN c ELSE ' ' END, '' ORDER BY i)
               FROM regexp_split_to_table(coalesce(p_text, ''), '') WITH ORDINALITY AS s(c, i)),
            '[\u0009-\u000d\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+', ' ', 'g')),
            p_max)) AS t) v
  $clean$;

  -- A role as the predecessor stored it, trimmed of every White_Space character
  -- (not only the spaces btrim takes): 'medic<TAB>' is the responder role the
  -- canonical spelling (20251221000100, which runs after this) will make it, so
  -- it is classified and held here as such. ASCII-only case fold, as there.
  CREATE OR REPLACE FUNCTION pg_temp.adopt_role_trim(p_role text) RETURNS text
  LANGUAGE sql IMMUTABLE SET search_path = '' AS $trim$
    SELECT regexp_replace(p_role,
      '^[\u0009-\u000d\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+|[\u0009-\u000d\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+$',
      '', 'g')
  $trim$;
  CREATE OR REPLACE FUNCTION pg_temp.adopt_role_key(p_role text) RETURNS text
  LANGUAGE sql IMMUTABLE SET search_path = '' AS $key$
    SELECT translate(pg_temp.adopt_role_trim(p_role), 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz')
  $key$;

  -- Powers held until an operator confirms them (nexus admin holds): ranks
  -- above scout and the responder roles. The member lives as scout without
  -- those roles meanwhile; public.adoption_hold_settle confirms or declines,
  -- and any later member-admin change settles the hold (its audit row).
  CREATE TABLE IF NOT EXISTS nexus_adopt.holds (
    member_id uuid PRIMARY KEY, callsign text, email text,
    held_rank text, held_roles text[] NOT NULL DEFAULT '{}', held_skills uuid[] NOT NULL DEFAULT '{}',
    live_rank text NOT NULL, live_roles text[] NOT NULL,
    status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'confirmed', 'declined', 'settled')),
    settled_at timestamptz, audit_id bigint, held_at timestamptz NOT NULL DEFAULT now());
  -- The predecessor's guests (is_guest): vagrants without a callsign now.
  CREATE TABLE IF NOT EXISTS nexus_adopt.guests (
    member_id uuid PRIMARY KEY, email text, guest_expires_at timestamptz, old_rank text, old_callsign text);
  -- Every row set aside that has no row in ours, per table and reason.
  CREATE TABLE IF NOT EXISTS nexus_adopt.not_adopted (
    tbl text NOT NULL, reason text NOT NULL, rows bigint NOT NULL, PRIMARY KEY (tbl, reason));

  -- profiles ------------------------------------------------------------------
  CREATE TEMP TABLE adopt_profiles ON COMMIT DROP AS
  SELECT o.id, to_jsonb(o) AS j,
         coalesce(o.created_at, now()) AS created_at,
         nullif(btrim(regexp_replace(left(coalesce(to_jsonb(o) ->> 'callsign', ''), 64), '[[:cntrl:]]+', ' ', 'g')), '')
           AS callsign,
         lower(btrim(coalesce(to_jsonb(o) ->> 'rank', ''))) AS old_rank,
         coalesce(to_jsonb(o) ->> 'is_guest', '') = 'true' AS is_guest,
         -- a guest of ours: it keeps no power of the predecessor's (a vagrant, nothing held)
         EXISTS (SELECT 1 FROM auth.users u WHERE u.id = o.id AND coalesce(u.is_anonymous, false)) AS is_anon,
         NULL::text AS rank, NULL::text[] AS roles, NULL::text AS live_rank, NULL::text[] AS live_roles
  FROM nexus_adopt.profiles o
  WHERE EXISTS (SELECT 1 FROM auth.users u WHERE u.id = o.id);
  INSERT INTO nexus_adopt.not_adopted (tbl, reason, rows)
  SELECT 'profiles', 'no auth user (nobody can sign in as it)', count(*)
  FROM nexus_adopt.profiles o WHERE NOT EXISTS (SELECT 1 FROM adopt_profiles p WHERE p.id = o.id);

  -- Role names in the spelling first written (oldest profile first).
  CREATE TEMP TABLE adopt_role_spelling ON COMMIT DROP AS
  SELECT DISTINCT ON (pg_temp.adopt_role_key(x)) pg_temp.adopt_role_key(x) AS key,
         CASE pg_temp.adopt_role_key(x) WHEN 'brig' THEN 'brigged' WHEN 'brigged' THEN 'brigged'
           WHEN 'medic' THEN 'Medic' WHEN 'rescue' THEN 'Rescue'
           ELSE pg_temp.adopt_role_trim(x) END AS spelling  -- member-admin's spellings; others as first written
  FROM adopt_profiles p
  CROSS JOIN LATERAL jsonb_array_elements_text(
    CASE WHEN jsonb_typeof(p.j -> 'roles') = 'array' THEN p.j -> 'roles' ELSE '[]'::jsonb END)
    WITH ORDINALITY e(x, ord)
  WHERE pg_temp.adopt_role_trim(x) <> ''
  ORDER BY pg_temp.adopt_role_key(x), p.created_at, p.id, ord;
  -- brig and brigged are one role
  UPDATE adopt_role_spelling SET key = 'brigged' WHERE key = 'brig'
    AND NOT EXISTS (SELECT 1 FROM adopt_role_spelling WHERE key = 'brigged');
  DELETE FROM adopt_role_spelling WHERE key = 'brig';

  UPDATE adopt_profiles p SET
    rank = CASE WHEN p.old_rank = ANY (v_ranks) THEN p.old_rank ELSE 'vagrant' END,
    roles = coalesce((SELECT array_agg(s.spelling ORDER BY min_ord)
                      FROM (SELECT sp.spelling, min(e.ord) AS min_ord
                            FROM jsonb_array_elements_text(
                                   CASE WHEN jsonb_typeof(p.j -> 'roles') = 'array' THEN p.j -> 'roles' ELSE '[]'::jsonb END)
                                 WITH ORDINALITY e(x, ord)
                            JOIN adopt_role_spelling sp
                              ON sp.key = CASE pg_temp.adopt_role_key(e.x) WHEN 'brig' THEN 'brigged' ELSE pg_temp.adopt_role_key(e.x) END
                            GROUP BY sp.spelling) s), '{}');
  -- What members may have given themselves is held: ranks above scout and the
  -- responder roles. Guests keep neither (below).
  UPDATE adopt_profiles SET
    live_rank = CASE WHEN is_guest OR is_anon THEN 'vagrant' WHEN public.rank_level(rank) > public.rank_level('scout') THEN 'scout'
                     ELSE rank END,
    live_roles = ARRAY(SELECT x FROM unnest(roles) WITH ORDINALITY AS t(x, i)
                        WHERE x NOT IN ('Medic', 'Rescue') ORDER BY i);
  -- Members are listed by the email they sign in with (auth.users): profiles.email
  -- was theirs to write, a known member's address as good as their own.
  INSERT INTO nexus_adopt.holds (member_id, callsign, email, held_rank, held_roles, live_rank, live_roles)
  SELECT id, callsign, (SELECT u.email FROM auth.users u WHERE u.id = p.id), CASE WHEN rank <> live_rank THEN rank END,
         ARRAY(SELECT x FROM unnest(roles) WITH ORDINALITY AS t(x, i) WHERE x IN ('Medic', 'Rescue') ORDER BY i),
         live_rank, live_roles
  FROM adopt_profiles p
  WHERE NOT is_guest AND NOT is_anon AND (rank <> live_rank OR roles && ARRAY['Medic', 'Rescue'])
  ON CONFLICT (member_id) DO NOTHING;
  SELECT count(*) INTO v_n FROM nexus_adopt.holds WHERE held_rank IS NOT NULL;
  INSERT INTO nexus_adopt.conversions (step, rows, detail)
  VALUES ('profiles: rank above scout held (lives as scout)', v_n,
          'members could set their own rank; an operator confirms each (nexus admin holds)');
  SELECT count(*) INTO v_n FROM nexus_adopt.holds WHERE held_roles <> '{}';
  INSERT INTO nexus_adopt.conversions (step, rows, detail)
  VALUES ('profiles: responder roles held (Medic, Rescue)', v_n,
          'members could add their own roles; no flare reaches them until an operator confirms');
  -- The predecessor's guests (email accounts with is_guest, 24 h) were scouts:
  -- vagrants now, without a callsign; their rows stay, listed for removal.
  INSERT INTO nexus_adopt.guests (member_id, email, guest_expires_at, old_rank, old_callsign)
  SELECT id, (SELECT u.email FROM auth.users u WHERE u.id = p.id),
         (j ->> 'guest_expires_at')::timestamptz, j ->> 'rank', j ->> 'callsign'
  FROM adopt_profiles p WHERE is_guest
  ON CONFLICT (member_id) DO NOTHING;
  UPDATE adopt_profiles SET callsign = NULL WHERE is_guest;
  SELECT count(*) INTO v_n FROM adopt_profiles WHERE is_anon AND NOT is_guest AND rank <> 'vagrant';
  INSERT INTO nexus_adopt.conversions (step, rows, detail)
  VALUES ('profiles: anonymous sign-ins -> vagrant', v_n, 'guests of ours: nothing held, a vagrant once made permanent');
  SELECT count(*) INTO v_n FROM adopt_profiles WHERE is_guest;
  INSERT INTO nexus_adopt.conversions (step, rows, detail)
  VALUES ('profiles: guests (is_guest) -> vagrant without a callsign', v_n,
          'rows kept; listed with guest_expires_at in nexus_adopt.guests');

  -- Callsigns follow issue 12's rules (shared/text.py), as for rows that were
  -- ours already: a guest (anonymous sign-in) keeps no callsign; one that
  -- breaks the text rules others are shown is cleared; callsigns that collide
  -- (NFKC and case folding, public.callsign_key) stay, the oldest holder under
  -- the unique index and the others grandfathered.
  UPDATE adopt_profiles p SET callsign = NULL
  FROM auth.users u WHERE u.id = p.id AND coalesce(u.is_anonymous, false) AND p.callsign IS NOT NULL;
  GET DIAGNOSTICS v_n = ROW_COUNT;
  INSERT INTO nexus_adopt.conversions (step, rows, detail)
  VALUES ('profiles: guests (anonymous sign-ins) lose their callsigns', v_n, 'a guest must not keep a name from a member');
  UPDATE adopt_profiles SET callsign = NULL
  WHERE callsign IS NOT NULL AND NOT public.text_is_shown_plainly(callsign);
  GET DIAGNOSTICS v_n = ROW_COUNT;
  INSERT INTO nexus_adopt.conversions (step, rows, detail)
  VALUES ('profiles: callsigns breaking the text rules cleared', v_n,
          'format characters (bidi, zero-width), separators or only blanks; the old value stays in nexus_adopt.profiles');
  ALTER TABLE adopt_profiles ADD COLUMN grandfathered boolean NOT NULL DEFAULT false;
  WITH d AS (
    SELECT id, row_number() OVER (PARTITION BY public.callsign_key(callsign) ORDER BY created_at, id) AS nth
    FROM adopt_profiles WHERE callsign IS NOT NULL)
  UPDATE adopt_profiles p SET grandfathered = true FROM d WHERE d.id = p.id AND d.nth > 1;
  GET DIAGNOSTICS v_n = ROW_COUNT;
  INSERT INTO nexus_adopt.conversions (step, rows, detail)
  VALUES ('profiles: colliding callsigns kept (grandfathered)', v_n,
          'the oldest holder is under the unique index; the others keep theirs until they change it');

  -- profiles_callsign_unclaimed clears callsign_grandfathered on every insert
  -- (a member cannot grandfather themselves); the conversion sets it as the
  -- rule's own migration did for rows that were there before it.
  ALTER TABLE public.profiles DISABLE TRIGGER profiles_callsign_unclaimed;
  INSERT INTO public.profiles AS t (id, callsign, callsign_grandfathered, rank, roles, created_at, updated_at)
  SELECT p.id, p.callsign, p.grandfathered, p.live_rank, p.live_roles, p.created_at, coalesce((p.j ->> 'updated_at')::timestamptz, p.created_at)
  FROM adopt_profiles p
  ON CONFLICT (id) DO UPDATE SET callsign = EXCLUDED.callsign, callsign_grandfathered = EXCLUDED.callsign_grandfathered,
                                 rank = EXCLUDED.rank, roles = EXCLUDED.roles;
  GET DIAGNOSTICS v_n = ROW_COUNT;
  ALTER TABLE public.profiles ENABLE TRIGGER profiles_callsign_unclaimed;
  INSERT INTO nexus_adopt.conversions (step, rows, detail) VALUES ('profiles', v_n, 'members adopted');

  SELECT count(*) INTO v_n FROM adopt_profiles WHERE old_rank = '';
  INSERT INTO nexus_adopt.conversions (step, rows, detail)
  VALUES ('profiles: rank NULL or empty -> vagrant', v_n, 'the predecessor read them as vagrant');
  SELECT count(*) INTO v_n FROM adopt_profiles WHERE old_rank <> '' AND NOT (old_rank = ANY (v_ranks));
  INSERT INTO nexus_adopt.conversions (step, rows, detail)
  VALUES ('profiles: rank naming no rank -> vagrant', v_n, '');
  SELECT count(*) INTO v_n FROM adopt_profiles WHERE (j ->> 'rank') IS DISTINCT FROM old_rank AND old_rank <> '';
  INSERT INTO nexus_adopt.conversions (step, rows, detail)
  VALUES ('profiles: rank lower-cased or trimmed', v_n, '');
  SELECT count(*) INTO v_n FROM adopt_profiles WHERE jsonb_typeof(j -> 'roles') IS DISTINCT FROM 'array';
  INSERT INTO nexus_adopt.conversions (step, rows, detail) VALUES ('profiles: roles NULL -> {}', v_n, '');
  SELECT count(*) INTO v_n FROM adopt_profiles p
  WHERE jsonb_typeof(p.j -> 'roles') = 'array' AND to_jsonb(p.roles) <> p.j -> 'roles';
  INSERT INTO nexus_adopt.conversions (step, rows, detail)
  VALUES ('profiles: roles respelled (brig -> brigged, Medic, Rescue, first spelling)', v_n, '');
  SELECT count(*) INTO v_n FROM adopt_profiles p
  WHERE p.callsign IS DISTINCT FROM nullif(p.j ->> 'callsign', '');
  INSERT INTO nexus_adopt.conversions (step, rows, detail)
  VALUES ('profiles: callsign cleaned', v_n, 'control characters, blank or longer than 64');


  -- voice_nets ----------------------------------------------------------------
  CREATE TEMP TABLE adopt_nets ON COMMIT DROP AS
  SELECT o.id, coalesce(o.created_at, now()) AS created_at, o.linked_squad_id, o.label,
         nullif(btrim(coalesce(o.code, '')), '') AS old_code,
         CASE WHEN o.min_rank_to_join IS NULL THEN NULL ELSE coalesce(nullif(lower(btrim(o.min_rank_to_join)), ''), 'vagrant') END AS j,
         CASE WHEN o.min_rank_to_rx IS NULL THEN NULL ELSE coalesce(nullif(lower(btrim(o.min_rank_to_rx)), ''), 'vagrant') END AS rx,
         CASE WHEN o.min_rank_to_tx IS NULL THEN NULL ELSE coalesce(nullif(lower(btrim(o.min_rank_to_tx)), ''), 'vagrant') END AS tx,
         o.min_rank_to_join AS oj, o.min_rank_to_rx AS orx, o.min_rank_to_tx AS otx,
         NULL::text AS code, NULL::text AS min_join, NULL::text AS min_rx, NULL::text AS min_tx
  FROM nexus_adopt.voice_nets o;
  UPDATE adopt_nets SET min_join = CASE WHEN coalesce(j, rx, 'scout') = ANY (v_ranks) THEN coalesce(j, rx, 'scout') ELSE 'vagrant' END;
  UPDATE adopt_nets SET min_rx = CASE WHEN rx IS NULL THEN min_join WHEN rx = ANY (v_ranks) THEN rx ELSE 'vagrant' END,
                        min_tx = CASE WHEN coalesce(tx, 'scout') = ANY (v_ranks) THEN coalesce(tx, 'scout') ELSE 'vagrant' END;
  -- codes: a room name of our shape, never a sim pod's; none -> from the id
  UPDATE adopt_nets SET code = CASE
      WHEN old_code IS NULL THEN 'net-' || replace(id::text, '-', '')
      ELSE left(regexp_replace(regexp_replace(old_code, '[^A-Za-z0-9_.:-]+', '-', 'g'), '^[^A-Za-z0-9]+', ''), 110) END;
  UPDATE adopt_nets SET code = 'net-' || replace(id::text, '-', '') WHERE code = '';
  UPDATE adopt_nets SET code = 'net-' || code WHERE lower(code) LIKE 'sim-pod-%';
  WITH d AS (SELECT id, row_number() OVER (PARTITION BY code ORDER BY created_at, id) AS n FROM adopt_nets)
  UPDATE adopt_nets a SET code = a.code || '-' || left(replace(a.id::text, '-', ''), 8)
  FROM d WHERE d.id = a.id AND d.n > 1;
  GET DIAGNOSTICS v_m = ROW_COUNT;

  INSERT INTO public.voice_nets (id, code, label, min_rank_to_join, min_rank_to_rx, min_rank_to_tx, linked_squad_id, created_at)
  SELECT id, code, pg_temp.adopt_clean(label, 120, code), min_join, min_rx, min_tx, linked_squad_id, created_at
  FROM adopt_nets;
  GET DIAGNOSTICS v_n = ROW_COUNT;
  INSERT INTO nexus_adopt.conversions (step, rows, detail) VALUES ('voice_nets', v_n, 'nets adopted');
  INSERT INTO nexus_adopt.conversions (step, rows, detail)
  VALUES ('voice_nets: duplicate code suffixed', v_m, 'the oldest net keeps a code several nets held');
  SELECT count(*) INTO v_n FROM adopt_nets WHERE old_code IS NULL;
  INSERT INTO nexus_adopt.conversions (step, rows, detail) VALUES ('voice_nets: code derived from the id', v_n, 'the net had no code');
  SELECT count(*) INTO v_n FROM adopt_nets WHERE old_code IS NOT NULL AND code <> old_code;
  INSERT INTO nexus_adopt.conversions (step, rows, detail) VALUES ('voice_nets: code changed', v_n, 'not a valid room name, or shared');
  SELECT count(*) INTO v_n FROM adopt_nets WHERE j IS NULL;
  INSERT INTO nexus_adopt.conversions (step, rows, detail) VALUES ('voice_nets: join NULL -> receive or scout', v_n, '');
  SELECT count(*) INTO v_n FROM adopt_nets WHERE rx IS NULL;
  INSERT INTO nexus_adopt.conversions (step, rows, detail) VALUES ('voice_nets: receive NULL -> join', v_n, '');
  SELECT count(*) INTO v_n FROM adopt_nets WHERE tx IS NULL;
  INSERT INTO nexus_adopt.conversions (step, rows, detail) VALUES ('voice_nets: transmit NULL -> scout', v_n, '');
  SELECT count(*) INTO v_n FROM adopt_nets
  WHERE NOT (coalesce(j, 'vagrant') = ANY (v_ranks)) OR NOT (coalesce(rx, 'vagrant') = ANY (v_ranks))
     OR NOT (coalesce(tx, 'vagrant') = ANY (v_ranks));
  INSERT INTO nexus_adopt.conversions (step, rows, detail)
  VALUES ('voice_nets: threshold naming no rank -> vagrant', v_n, 'the predecessor let everyone in');
  SELECT count(*) INTO v_n FROM adopt_nets
  WHERE oj IS DISTINCT FROM min_join OR orx IS DISTINCT FROM min_rx OR otx IS DISTINCT FROM min_tx;
  INSERT INTO nexus_adopt.conversions (step, rows, detail) VALUES ('voice_nets: thresholds rewritten', v_n, 'any of the above, or case');

  -- bridges -------------------------------------------------------------------
  INSERT INTO public.voice_net_bridges (id, source_net_id, target_net_id, created_by, created_at)
  SELECT DISTINCT ON (least(b.source_net_id, b.target_net_id), greatest(b.source_net_id, b.target_net_id))
         b.id, b.source_net_id, b.target_net_id,
         (SELECT p.id FROM public.profiles p WHERE p.id = b.created_by), coalesce(b.created_at, now())
  FROM nexus_adopt.voice_net_bridges b
  WHERE b.source_net_id <> b.target_net_id
    AND EXISTS (SELECT 1 FROM public.voice_nets n WHERE n.id = b.source_net_id)
    AND EXISTS (SELECT 1 FROM public.voice_nets n WHERE n.id = b.target_net_id)
  ORDER BY least(b.source_net_id, b.target_net_id), greatest(b.source_net_id, b.target_net_id), b.created_at, b.id;
  GET DIAGNOSTICS v_n = ROW_COUNT;
  INSERT INTO nexus_adopt.conversions (step, rows, detail) VALUES ('voice_net_bridges', v_n, 'bridges adopted');
  SELECT count(*) INTO v_n FROM nexus_adopt.voice_net_bridges WHERE source_net_id = target_net_id;
  INSERT INTO nexus_adopt.conversions (step, rows, detail) VALUES ('voice_net_bridges: self-bridge removed', v_n, '');
  SELECT count(*) - count(DISTINCT (least(source_net_id, target_net_id), greatest(source_net_id, target_net_id)))
  INTO v_n FROM nexus_adopt.voice_net_bridges WHERE source_net_id <> target_net_id;
  INSERT INTO nexus_adopt.conversions (step, rows, detail)
  VALUES ('voice_net_bridges: second direction removed', v_n, 'A->B and B->A are one bridge');
  INSERT INTO nexus_adopt.not_adopted (tbl, reason, rows)
  SELECT 'voice_net_bridges', 'self-bridge', count(*) FROM nexus_adopt.voice_net_bridges
  WHERE source_net_id = target_net_id
  UNION ALL
  SELECT 'voice_net_bridges', 'second direction or repeat of a bridge adopted', count(*)
  FROM nexus_adopt.voice_net_bridges b
  WHERE b.source_net_id <> b.target_net_id AND NOT EXISTS (SELECT 1 FROM public.voice_net_bridges t WHERE t.id = b.id)
    AND EXISTS (SELECT 1 FROM public.voice_nets n WHERE n.id = b.source_net_id)
    AND EXISTS (SELECT 1 FROM public.voice_nets n WHERE n.id = b.target_net_id)
  UNION ALL
  SELECT 'voice_net_bridges', 'a net it joins is gone', count(*)
  FROM nexus_adopt.voice_net_bridges b
  WHERE b.source_net_id <> b.target_net_id
    AND NOT (EXISTS (SELECT 1 FROM public.voice_nets n WHERE n.id = b.source_net_id)
             AND EXISTS (SELECT 1 FROM public.voice_nets n WHERE n.id = b.target_net_id));

  -- push subscriptions --------------------------------------------------------
  CREATE TEMP TABLE adopt_push_all ON COMMIT DROP AS
  SELECT o.user_id, btrim(o.endpoint, E' \t\r\n') AS endpoint, coalesce(o.created_at, now()) AS created_at,
         rtrim(translate(btrim(o.p256dh), '+/', '-_'), '=') AS p256dh,
         rtrim(translate(btrim(o.auth), '+/', '-_'), '=') AS auth,
         btrim(o.p256dh) <> rtrim(translate(btrim(o.p256dh), '+/', '-_'), '=')
           OR btrim(o.auth) <> rtrim(translate(btrim(o.auth), '+/', '-_'), '=') AS reencoded,
         EXISTS (SELECT 1 FROM public.profiles p WHERE p.id = o.user_id) AS has_member,
         -- one alphabet per key, the lengths of a P-256 point (65 bytes) and a 16-byte secret
         coalesce((btrim(o.p256dh) ~ '^[A-Za-z0-9+/]{87}=?$' OR btrim(o.p256dh) ~ '^[A-Za-z0-9_-]{87}=?$')
           AND (btrim(o.auth) ~ '^[A-Za-z0-9+/]{22}(==)?$' OR btrim(o.auth) ~ '^[A-Za-z0-9_-]{22}(==)?$')
           AND char_length(btrim(o.endpoint, E' \t\r\n')) BETWEEN 8 AND 2048, false) AS usable
  FROM nexus_adopt.push_subscriptions o;
  -- An endpoint held twice once trimmed: the newest subscription is the
  -- device's (push-subscribe moved an endpoint to whoever posted it last).
  CREATE TEMP TABLE adopt_push ON COMMIT DROP AS
  SELECT DISTINCT ON (endpoint) * FROM adopt_push_all WHERE usable AND has_member
  ORDER BY endpoint, created_at DESC, user_id;
  INSERT INTO public.push_subscriptions (user_id, endpoint, p256dh, auth, created_at, updated_at)
  SELECT user_id, endpoint, p256dh, auth, created_at, created_at FROM adopt_push
  ON CONFLICT (endpoint) DO NOTHING;
  GET DIAGNOSTICS v_n = ROW_COUNT;
  INSERT INTO nexus_adopt.conversions (step, rows, detail) VALUES ('push_subscriptions', v_n, 'devices adopted');
  SELECT count(*) INTO v_n FROM adopt_push WHERE reencoded;
  INSERT INTO nexus_adopt.conversions (step, rows, detail)
  VALUES ('push_subscriptions: keys re-encoded to base64url', v_n, 'the same bytes');
  SELECT (SELECT count(*) FROM nexus_adopt.push_subscriptions) - (SELECT count(*) FROM adopt_push) INTO v_n;
  INSERT INTO nexus_adopt.conversions (step, rows, detail)
  VALUES ('push_subscriptions: not adopted', v_n, 'no member, keys/endpoint unusable, or an endpoint held twice '
                                                   '(kept in nexus_adopt; counted in nexus_adopt.not_adopted)');
  INSERT INTO nexus_adopt.not_adopted (tbl, reason, rows)
  SELECT 'push_subscriptions', 'no member (none, or a profile not adopted)', count(*) FROM adopt_push_all
  WHERE NOT has_member
  UNION ALL
  SELECT 'push_subscriptions', 'keys or endpoint unusable', count(*) FROM adopt_push_all WHERE has_member AND NOT usable
  UNION ALL
  SELECT 'push_subscriptions', 'endpoint held by a newer subscription once trimmed',
         (SELECT count(*) FROM adopt_push_all WHERE has_member AND usable) - (SELECT count(*) FROM adopt_push);

  -- notifications: history, never pushed now ----------------------------------
  ALTER TABLE public.notification_queue DISABLE TRIGGER notification_queue_fan_out;
  INSERT INTO public.notification_queue (id, recipient_id, type, title, message, payload, created_at, sent_at, read_at)
  SELECT o.id, o.recipient_id, m.type,
         pg_temp.adopt_clean(o.title, 200, left(CASE m.type
             WHEN 'ACADEMY_REQUEST' THEN 'Training requested'
             WHEN 'ACADEMY_ACCEPTED' THEN 'Your guide is ready'
             WHEN 'RESCUE_FLARE' THEN initcap(m.flare_type) || ' rescue flare'
             WHEN 'MENTION' THEN 'You were mentioned'
             ELSE coalesce(nullif(initcap(btrim(replace(lower(m.type), '_', ' '))), ''), 'Notification') END, 200)),
         pg_temp.adopt_clean(o.message, 1000, ''),
         CASE WHEN jsonb_typeof(o.payload) = 'object' THEN o.payload
              WHEN o.payload IS NULL OR jsonb_typeof(o.payload) = 'null' THEN '{}'::jsonb
              ELSE jsonb_build_object('value', o.payload) END
           || CASE WHEN m.flare_type IS NOT NULL THEN jsonb_build_object('flareType', m.flare_type) ELSE '{}'::jsonb END
           || jsonb_build_object('adoptedFrom', jsonb_build_object('type', o.type, 'createdAt', o.created_at)),
         now(), o.sent_at, o.read_at
  FROM nexus_adopt.notification_queue o
  CROSS JOIN LATERAL (SELECT lower(btrim(o.type)) AS t) k
  CROSS JOIN LATERAL (SELECT
      CASE k.t WHEN 'academy_request' THEN 'ACADEMY_REQUEST' WHEN 'academy_accept' THEN 'ACADEMY_ACCEPTED'
               WHEN 'rescue_flare' THEN 'RESCUE_FLARE' WHEN 'combat_flare' THEN 'RESCUE_FLARE'
               WHEN 'mention' THEN 'MENTION'
               ELSE left(regexp_replace('X_' || upper(regexp_replace(k.t, '[^a-z0-9_]+', '_', 'g')), '^X_(?=[A-Z])', ''), 64)
      END AS type,
      CASE k.t WHEN 'combat_flare' THEN 'COMBAT'
               WHEN 'rescue_flare' THEN CASE WHEN upper(o.payload ->> 'flareType') IN ('MEDICAL', 'COMBAT')
                                             THEN upper(o.payload ->> 'flareType') ELSE 'MEDICAL' END
      END AS flare_type) m
  WHERE EXISTS (SELECT 1 FROM public.profiles p WHERE p.id = o.recipient_id);
  GET DIAGNOSTICS v_n = ROW_COUNT;
  ALTER TABLE public.notification_queue ENABLE TRIGGER notification_queue_fan_out;
  INSERT INTO nexus_adopt.conversions (step, rows, detail)
  VALUES ('notification_queue', v_n, 'history: not pushed; retention counts from now');
  INSERT INTO nexus_adopt.not_adopted (tbl, reason, rows)
  SELECT 'notification_queue', 'recipient not adopted', count(*) FROM nexus_adopt.notification_queue o
  WHERE NOT EXISTS (SELECT 1 FROM public.profiles p WHERE p.id = o.recipient_id);
  SELECT count(*) INTO v_n FROM nexus_adopt.notification_queue o JOIN public.notification_queue t ON t.id = o.id
  WHERE t.title IS DISTINCT FROM o.title;
  INSERT INTO nexus_adopt.conversions (step, rows, detail) VALUES ('notification_queue: title derived from the type', v_n, 'none, or blank once cleaned');
  SELECT count(*) INTO v_n FROM nexus_adopt.notification_queue WHERE payload IS NULL;
  INSERT INTO nexus_adopt.conversions (step, rows, detail) VALUES ('notification_queue: payload NULL -> {}', v_n, '');
  SELECT count(*) INTO v_n FROM nexus_adopt.notification_queue WHERE sent_at IS NULL AND read_at IS NULL;
  INSERT INTO nexus_adopt.conversions (step, rows, detail)
  VALUES ('notification_queue: never sent, kept unsent', v_n, 'nothing will push them');

  -- flares ----------------------------------------------------------------------
  INSERT INTO public.flares (id, sender_id, flare_type, location, status, created_at)
  SELECT o.id, (SELECT p.id FROM public.profiles p WHERE p.id = o.sender_id),
         CASE WHEN upper(btrim(o.type)) IN ('MEDICAL', 'COMBAT') THEN upper(btrim(o.type)) ELSE 'MEDICAL' END,
         pg_temp.adopt_clean(o.location, 200, 'unknown'),
         CASE WHEN upper(btrim(o.status)) = 'RESOLVED' THEN 'RESOLVED' ELSE 'ACTIVE' END,
         coalesce(o.created_at, now())
  FROM nexus_adopt.flares o;
  GET DIAGNOSTICS v_n = ROW_COUNT;
  INSERT INTO nexus_adopt.conversions (step, rows, detail) VALUES ('flares', v_n, 'type -> flare_type');
  SELECT count(*) INTO v_n FROM public.flares f JOIN nexus_adopt.flares o ON o.id = f.id WHERE f.sender_id IS NULL;
  INSERT INTO nexus_adopt.conversions (step, rows, detail) VALUES ('flares: no sender', v_n, 'kept, as the sender is gone');
  SELECT count(*) INTO v_n FROM public.flares f JOIN nexus_adopt.flares o ON o.id = f.id
  WHERE f.location IS DISTINCT FROM o.location;
  INSERT INTO nexus_adopt.conversions (step, rows, detail)
  VALUES ('flares: location cleaned', v_n, 'the text rules; blank once cleaned -> unknown');

  -- academy ---------------------------------------------------------------------
  -- Our names are unique (and at most 120 characters): a name several skills
  -- hold once cleaned and cut (any case) is numbered, oldest first, until
  -- none is held twice.
  CREATE TEMP TABLE adopt_skills ON COMMIT DROP AS
  SELECT o.id, pg_temp.adopt_clean(o.name, 120, 'Skill') AS base, o.description,
         coalesce(o.created_at, now()) AS created_at, 1 AS n, NULL::text AS name
  FROM nexus_adopt.skills o;
  UPDATE adopt_skills SET name = base;
  LOOP
    WITH d AS (SELECT id, row_number() OVER (PARTITION BY lower(name) ORDER BY created_at, id) AS nth FROM adopt_skills)
    UPDATE adopt_skills a SET n = a.n + d.nth - 1,
                              name = left(a.base, 117 - char_length((a.n + d.nth - 1)::text))
                                     || ' (' || (a.n + d.nth - 1) || ')'
    FROM d WHERE d.id = a.id AND d.nth > 1;
    EXIT WHEN NOT FOUND;
  END LOOP;
  INSERT INTO public.skills (id, name, description, created_at)
  SELECT id, name, pg_temp.adopt_clean(description, 2000, ''), created_at FROM adopt_skills;
  GET DIAGNOSTICS v_n = ROW_COUNT;
  INSERT INTO nexus_adopt.conversions (step, rows, detail) VALUES ('skills', v_n, 'a name several skills held is numbered');
  SELECT count(*) INTO v_n FROM adopt_skills WHERE n > 1;
  INSERT INTO nexus_adopt.conversions (step, rows, detail)
  VALUES ('skills: name numbered', v_n, 'held by an older skill once cleaned and cut to 120 characters');

  -- Certifications were self-made too (RLS off on the predecessor: anyone
  -- could make themselves a guide of any skill): each is held, the member a
  -- guide of none until an operator confirms (public.adoption_hold_settle
  -- certifies them then). A guest's go with the rest of their powers.
  INSERT INTO nexus_adopt.holds AS h (member_id, callsign, email, held_skills, live_rank, live_roles)
  SELECT p.id, p.callsign, (SELECT u.email FROM auth.users u WHERE u.id = p.id),
         array_agg(o.skill_id ORDER BY o.certified_at, o.skill_id), p.live_rank, p.live_roles
  FROM nexus_adopt.certifications o JOIN adopt_profiles p ON p.id = o.user_id
  WHERE NOT p.is_guest AND NOT p.is_anon AND EXISTS (SELECT 1 FROM public.skills s WHERE s.id = o.skill_id)
  GROUP BY p.id, p.callsign, p.live_rank, p.live_roles
  ON CONFLICT (member_id) DO UPDATE SET held_skills = EXCLUDED.held_skills;
  SELECT count(*) INTO v_n FROM nexus_adopt.holds, unnest(held_skills);
  INSERT INTO nexus_adopt.conversions (step, rows, detail)
  VALUES ('certifications: held (a guide of none until confirmed)', v_n,
          'anyone could certify themselves; an operator confirms each member (nexus admin holds)');
  INSERT INTO nexus_adopt.not_adopted (tbl, reason, rows)
  SELECT 'certifications', 'member not adopted', count(*) FROM nexus_adopt.certifications o
  WHERE NOT EXISTS (SELECT 1 FROM public.profiles p WHERE p.id = o.user_id)
  UNION ALL
  SELECT 'certifications', 'held until an operator confirms (nexus_adopt.holds)', v_n
  UNION ALL
  SELECT 'certifications', 'a guest (is_guest, or an anonymous sign-in): vagrant now', count(*)
  FROM nexus_adopt.certifications o JOIN adopt_profiles p ON p.id = o.user_id WHERE p.is_guest OR p.is_anon;

  CREATE TEMP TABLE adopt_requests ON COMMIT DROP AS
  SELECT o.id, o.cadet_id, o.skill_id, o.status::text AS old_status,
         (SELECT p.id FROM public.profiles p WHERE p.id = o.guide_id) AS guide_id,
         o.sim_pod_id, coalesce(o.created_at, now()) AS created_at,
         row_number() OVER (PARTITION BY o.cadet_id, o.skill_id, o.status::text = 'PENDING'
                            ORDER BY o.created_at DESC, o.id DESC) AS newest
  FROM nexus_adopt.instruction_requests o
  WHERE EXISTS (SELECT 1 FROM public.profiles p WHERE p.id = o.cadet_id)
    AND EXISTS (SELECT 1 FROM public.skills s WHERE s.id = o.skill_id);
  INSERT INTO public.instruction_requests (id, skill_id, cadet_id, guide_id, status, sim_pod_id, created_at, updated_at, closed_at)
  SELECT id, skill_id, cadet_id, guide_id,
         CASE WHEN old_status = 'PENDING' AND newest = 1 THEN 'PENDING'
              WHEN old_status = 'PENDING' THEN 'CANCELLED'
              WHEN old_status = 'ACTIVE' THEN 'COMPLETED'
              WHEN old_status IN ('COMPLETED', 'CANCELLED') THEN old_status
              ELSE 'CANCELLED' END,
         NULL, created_at,
         CASE WHEN old_status IN ('COMPLETED', 'CANCELLED') THEN created_at ELSE now() END,
         CASE WHEN old_status = 'PENDING' AND newest = 1 THEN NULL
              WHEN old_status IN ('COMPLETED', 'CANCELLED') THEN created_at ELSE now() END
  FROM adopt_requests;
  GET DIAGNOSTICS v_n = ROW_COUNT;
  INSERT INTO nexus_adopt.conversions (step, rows, detail) VALUES ('instruction_requests', v_n, 'requests adopted');
  INSERT INTO nexus_adopt.not_adopted (tbl, reason, rows)
  SELECT 'instruction_requests', 'cadet not adopted', count(*) FROM nexus_adopt.instruction_requests o
  WHERE NOT EXISTS (SELECT 1 FROM public.profiles p WHERE p.id = o.cadet_id);
  SELECT count(*) INTO v_n FROM adopt_requests WHERE old_status = 'ACTIVE';
  INSERT INTO nexus_adopt.conversions (step, rows, detail)
  VALUES ('instruction_requests: ACTIVE -> COMPLETED', v_n, 'closed now, guide kept, old sim pod id cleared');
  SELECT count(*) INTO v_n FROM adopt_requests WHERE old_status = 'PENDING' AND newest > 1;
  INSERT INTO nexus_adopt.conversions (step, rows, detail)
  VALUES ('instruction_requests: duplicate PENDING -> CANCELLED', v_n, 'the newest per cadet and skill stays open');
  SELECT count(*) INTO v_n FROM adopt_requests WHERE old_status = 'PENDING' AND newest = 1;
  INSERT INTO nexus_adopt.conversions (step, rows, detail)
  VALUES ('instruction_requests: PENDING kept open', v_n, 'the expiry schedule applies from now');

  -- presence: closed history ------------------------------------------------------
  INSERT INTO public.voice_presence (room_name, participant_identity, participant_sid, participant_metadata, user_id,
                                     joined_at, left_at, left_reason, last_event_at)
  SELECT o.room_name, o.participant_identity, coalesce(nullif(o.participant_sid, ''), 'adopted-' || o.id::text),
         CASE WHEN jsonb_typeof(o.participant_metadata) = 'object' THEN o.participant_metadata ELSE '{}'::jsonb END,
         (SELECT p.id FROM public.profiles p WHERE p.id = o.user_id), coalesce(o.joined_at, now()),
         greatest(coalesce(o.left_at, now()), coalesce(o.joined_at, now())),
         CASE WHEN o.left_at IS NULL THEN 'closed_at_adoption' ELSE 'adopted_history' END,
         greatest(coalesce(o.left_at, now()), coalesce(o.joined_at, now()))
  FROM nexus_adopt.voice_presence o
  ON CONFLICT ON CONSTRAINT voice_presence_session_key DO NOTHING;
  GET DIAGNOSTICS v_n = ROW_COUNT;
  INSERT INTO nexus_adopt.conversions (step, rows, detail) VALUES ('voice_presence', v_n, 'all closed history');
  INSERT INTO nexus_adopt.not_adopted (tbl, reason, rows)
  SELECT 'voice_presence', 'conflict: the same room and session id as a row adopted',
         (SELECT count(*) FROM nexus_adopt.voice_presence) - v_n;
  SELECT count(*) INTO v_n FROM nexus_adopt.voice_presence WHERE left_at IS NULL;
  INSERT INTO nexus_adopt.conversions (step, rows, detail) VALUES ('voice_presence: open rows closed', v_n, 'left_reason closed_at_adoption');

  -- their columns, back on our tables -------------------------------------------
  FOR r IN
    SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod) AS typ, pg_get_expr(d.adbin, d.adrelid) AS def
    FROM pg_attribute a
    JOIN pg_class c ON c.oid = a.attrelid AND c.relnamespace = 'nexus_adopt'::regnamespace
    LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
    WHERE c.relname = ANY (v_ours) AND a.attnum > 0 AND NOT a.attisdropped
      AND NOT (c.relname = 'flares' AND a.attname = 'type')
      AND NOT EXISTS (SELECT 1 FROM pg_attribute b
                      WHERE b.attrelid = format('public.%I', c.relname)::regclass AND b.attname = a.attname
                        AND b.attnum > 0 AND NOT b.attisdropped)
    ORDER BY c.relname, a.attnum
  LOOP
    EXECUTE format('ALTER TABLE public.%I ADD COLUMN %I %s', r.relname, r.attname, r.typ)
      || CASE WHEN r.def IS NOT NULL THEN ' DEFAULT ' || r.def ELSE '' END;
    SELECT string_agg(format('t.%I = o.%s', k, CASE WHEN r.relname = 'voice_presence' AND k = 'participant_sid'
                                                   THEN 'participant_sid_key' ELSE quote_ident(k) END), ' AND ')
    INTO v_join FROM unnest(string_to_array(v_keys ->> r.relname, ',')) k;
    EXECUTE format('UPDATE public.%I t SET %I = o.%I FROM (SELECT x.*, coalesce(nullif(%s, %L), %L || %s) AS participant_sid_key '
                   'FROM nexus_adopt.%I x) o WHERE %s',
                   r.relname, r.attname, r.attname,
                   CASE WHEN r.relname = 'voice_presence' THEN 'x.participant_sid' ELSE 'NULL::text' END, '',
                   'adopted-', CASE WHEN r.relname = 'voice_presence' THEN 'x.id::text' ELSE 'NULL::text' END,
                   r.relname, v_join);
    INSERT INTO nexus_adopt.foreign_objects (kind, name) VALUES ('column', format('public.%I.%I', r.relname, r.attname))
    ON CONFLICT DO NOTHING;
  END LOOP;

  -- their foreign keys to the tables set aside now point at ours ----------------
  FOR r IN
    SELECT k.oid, k.conname, format('%I.%I', n.nspname, c.relname) AS tbl
    FROM pg_constraint k
    JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
    JOIN pg_class rt ON rt.oid = k.confrelid
    WHERE k.contype = 'f' AND rt.relnamespace = 'nexus_adopt'::regnamespace AND n.nspname <> 'nexus_adopt'
  LOOP
    v_def := replace(pg_get_constraintdef(r.oid), 'REFERENCES nexus_adopt.', 'REFERENCES public.');
    EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', r.tbl, r.conname);
    EXECUTE format('ALTER TABLE %s ADD CONSTRAINT %I %s', r.tbl, r.conname, v_def);
    INSERT INTO nexus_adopt.conversions (step, rows, detail)
    VALUES ('foreign key ' || r.tbl || '.' || r.conname || ' -> ours', 1, v_def);
  END LOOP;

  -- their policies that read the tables set aside now read ours -----------------
  FOR r IN
    SELECT p.schemaname, p.tablename, p.policyname, p.permissive, p.cmd, p.roles, p.qual, p.with_check
    FROM pg_policies p
    WHERE p.schemaname <> 'nexus_adopt'
      AND (coalesce(p.qual, '') || coalesce(p.with_check, '')) LIKE '%nexus_adopt.%'
  LOOP
    EXECUTE format('DROP POLICY %I ON %I.%I', r.policyname, r.schemaname, r.tablename);
    EXECUTE format('CREATE POLICY %I ON %I.%I AS %s FOR %s TO %s', r.policyname, r.schemaname, r.tablename,
                   r.permissive, r.cmd, (SELECT string_agg(quote_ident(x), ', ') FROM unnest(r.roles) x))
      || CASE WHEN r.qual IS NOT NULL THEN ' USING (' || replace(r.qual, 'nexus_adopt.', 'public.') || ')' ELSE '' END
      || CASE WHEN r.with_check IS NOT NULL
              THEN ' WITH CHECK (' || replace(r.with_check, 'nexus_adopt.', 'public.') || ')' ELSE '' END;
    INSERT INTO nexus_adopt.conversions (step, rows, detail)
    VALUES ('policy ' || r.schemaname || '.' || r.tablename || '.' || r.policyname || ' -> ours', 1, '');
  END LOOP;

  -- their tables left in public: closed to anon and to guests ------------------
  -- Their policies test auth.role() = 'authenticated', which a guest (an
  -- anonymous sign-in) passes too, and tables without row level security let
  -- anon read and write. Anon loses every privilege on them; guests meet a
  -- restrictive policy as on ours; a table without row level security gets it,
  -- with a policy that leaves members (authenticated, not guests) what they had.
  FOR r IN
    SELECT format('%I.%I', n.nspname, c.relname) AS tbl, c.relkind, c.relrowsecurity
    FROM nexus_adopt.foreign_objects f
    JOIN pg_class c ON c.oid = to_regclass(f.name) JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE f.kind = 'table' AND n.nspname = 'public'
    ORDER BY 1
  LOOP
    EXECUTE format('REVOKE ALL ON %s FROM anon', r.tbl);
    IF r.relkind IN ('r', 'p') THEN
      IF NOT r.relrowsecurity THEN
        EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', r.tbl);
        EXECUTE format('CREATE POLICY nexus_adopt_members_as_before ON %s AS PERMISSIVE FOR ALL TO authenticated '
                       'USING (true) WITH CHECK (true)', r.tbl);
      END IF;
      EXECUTE format('CREATE POLICY nexus_adopt_guests_none ON %s AS RESTRICTIVE FOR ALL TO authenticated '
                     'USING (coalesce((SELECT auth.jwt()) -> %L, %L::jsonb) = %L::jsonb) '
                     'WITH CHECK (coalesce((SELECT auth.jwt()) -> %L, %L::jsonb) = %L::jsonb)',
                     r.tbl, 'is_anonymous', 'false', 'false', 'is_anonymous', 'false', 'false');
      INSERT INTO nexus_adopt.conversions (step, rows, detail)
      VALUES ('closed to anon and guests: ' || r.tbl, 0,
              CASE WHEN r.relrowsecurity THEN 'anon privileges revoked; guests refused by a restrictive policy'
                   ELSE 'anon privileges revoked; row level security on: members keep every row, guests none' END);
    ELSE
      EXECUTE format('REVOKE ALL ON %s FROM authenticated', r.tbl);
      INSERT INTO nexus_adopt.conversions (step, rows, detail)
      VALUES ('closed to anon and guests: ' || r.tbl, 0, 'a view has no row level security: anon and authenticated revoked');
    END IF;
  END LOOP;

  -- Nothing set aside goes uncounted: a row without a row of ours that no
  -- reason above explains is counted as such.
  CREATE TEMP TABLE adopt_missing (tbl text PRIMARY KEY, missing bigint NOT NULL) ON COMMIT DROP;
  FOREACH v_join IN ARRAY ARRAY['profiles', 'voice_nets', 'voice_net_bridges', 'notification_queue', 'flares',
                                'skills', 'instruction_requests'] LOOP
    EXECUTE format('INSERT INTO adopt_missing SELECT %L, count(*) FROM nexus_adopt.%I o '
                   'WHERE NOT EXISTS (SELECT 1 FROM public.%I t WHERE t.id = o.id)', v_join, v_join, v_join);
  END LOOP;
  INSERT INTO adopt_missing
  SELECT 'push_subscriptions', count(*) FROM nexus_adopt.push_subscriptions o
  WHERE NOT EXISTS (SELECT 1 FROM public.push_subscriptions t
                    WHERE t.endpoint = btrim(o.endpoint, E' \t\r\n') AND t.user_id = o.user_id
                      AND t.created_at = coalesce(o.created_at, t.created_at))
  UNION ALL SELECT 'certifications', count(*) FROM nexus_adopt.certifications o
  WHERE NOT EXISTS (SELECT 1 FROM public.certifications t WHERE t.user_id = o.user_id AND t.skill_id = o.skill_id)
  UNION ALL SELECT 'voice_presence', count(*) FROM nexus_adopt.voice_presence o
  WHERE NOT EXISTS (SELECT 1 FROM public.voice_presence t WHERE t.room_name = o.room_name
                      AND t.participant_sid = coalesce(nullif(o.participant_sid, ''), 'adopted-' || o.id::text));
  INSERT INTO nexus_adopt.not_adopted (tbl, reason, rows)
  SELECT m.tbl, 'not explained by any reason above', m.missing - coalesce(e.rows, 0)
  FROM adopt_missing m
  LEFT JOIN (SELECT tbl, sum(rows) AS rows FROM nexus_adopt.not_adopted GROUP BY tbl) e ON e.tbl = m.tbl
  WHERE m.missing > coalesce(e.rows, 0);
  DELETE FROM nexus_adopt.not_adopted WHERE rows = 0;
END
$$;

-- Every member signed up has a profile (anonymous sign-ins are not members).
-- On an empty database there is nobody to add. A sign-up during the cutover
-- window (the predecessor's trigger gone, ours not yet there) gets what our
-- sign-up gives: a vagrant profile, its callsign left out when it breaks the
-- text rules or another member (or an older such sign-up) holds it.
DO $$
DECLARE
  v_n bigint;
  v_m bigint;
BEGIN
  CREATE TEMP TABLE adopt_signups ON COMMIT DROP AS
  SELECT u.id, u.created_at,
         nullif(btrim(regexp_replace(left(coalesce(u.raw_user_meta_data ->> 'callsign', ''), 64),
                                     '[[:cntrl:]]+', ' ', 'g')), '') AS asked,
         NULL::text AS callsign
  FROM auth.users u
  WHERE NOT EXISTS (SELECT 1 FROM public.profiles p WHERE p.id = u.id)
    AND NOT coalesce((to_jsonb(u) ->> 'is_anonymous')::boolean, false);
  UPDATE adopt_signups s SET callsign = s.asked
  FROM (SELECT id, row_number() OVER (PARTITION BY public.callsign_key(asked) ORDER BY created_at, id) AS nth
        FROM adopt_signups WHERE asked IS NOT NULL AND public.text_is_shown_plainly(asked)) d
  WHERE d.id = s.id AND d.nth = 1
    AND NOT EXISTS (SELECT 1 FROM public.profiles p
                    WHERE p.callsign IS NOT NULL AND public.callsign_key(p.callsign) = public.callsign_key(s.asked));
  INSERT INTO public.profiles (id, callsign)
  SELECT id, callsign FROM adopt_signups
  ON CONFLICT (id) DO NOTHING;
  GET DIAGNOSTICS v_n = ROW_COUNT;
  SELECT count(*) INTO v_m FROM adopt_signups WHERE asked IS NOT NULL AND callsign IS NULL;
  IF to_regclass('nexus_adopt.conversions') IS NOT NULL THEN
    INSERT INTO nexus_adopt.conversions (step, rows, detail)
    VALUES ('profiles: auth users without one get a vagrant profile', v_n, 'anonymous sign-ins excepted')
    ON CONFLICT (step) DO NOTHING;
    INSERT INTO nexus_adopt.conversions (step, rows, detail)
    VALUES ('profiles: sign-ups in the window: callsign left out', v_m,
            'it broke the text rules, or a member (or an older sign-up) holds it, as our sign-up does')
    ON CONFLICT (step) DO NOTHING;
  END IF;
END
$$;
