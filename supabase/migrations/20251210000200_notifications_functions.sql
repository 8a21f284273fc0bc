-- Functions and triggers for notifications. Each state change the functions
-- make is one of these, so every request and every fan-out step is one round
-- trip and atomic.

-- Any producer queues a push by inserting into notification_queue; this fans
-- the inserted rows out to one delivery per device of each recipient. One
-- statement-level trigger so a flare to many responders is one INSERT ... SELECT.
CREATE OR REPLACE FUNCTION nexus_private.notification_queue_fan_out() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' AS $$
BEGIN
  INSERT INTO nexus_private.push_deliveries (notification_id, subscription_id)
  SELECT n.id, s.id
  FROM new_rows n
  JOIN public.push_subscriptions s ON s.user_id = n.recipient_id
  WHERE n.sent_at IS NULL
  ON CONFLICT (notification_id, subscription_id) DO NOTHING;
  RETURN NULL;
END
$$;

CREATE TRIGGER notification_queue_fan_out
  AFTER INSERT ON public.notification_queue
  REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION nexus_private.notification_queue_fan_out();

CREATE TRIGGER push_subscriptions_touch_updated_at
  BEFORE UPDATE ON public.push_subscriptions
  FOR EACH ROW EXECUTE FUNCTION public.touch_updated_at();

-- notifications-subscribe (POST): upsert by endpoint. A browser endpoint that
-- moves to another account takes nothing of the old owner's with it: its
-- open deliveries are cancelled. Devices beyond p_max_devices are evicted,
-- least recently subscribed first. The profile row lock serialises one
-- member's concurrent subscribes so the cap holds.
CREATE OR REPLACE FUNCTION public.push_subscription_upsert(
  p_user_id uuid, p_endpoint text, p_p256dh text, p_auth text, p_max_devices integer
) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' AS $$
DECLARE
  v_id uuid;
  v_previous_owner uuid;
  v_evicted integer;
BEGIN
  PERFORM 1 FROM public.profiles WHERE id = p_user_id FOR UPDATE;
  IF NOT FOUND THEN
    RETURN jsonb_build_object('error', 'NO_PROFILE');
  END IF;

  -- Lock order (see push_report_deliveries): subscriptions in id order first.
  PERFORM 1 FROM public.push_subscriptions
  WHERE user_id = p_user_id OR endpoint = p_endpoint
  ORDER BY id FOR UPDATE;
  SELECT id, user_id INTO v_id, v_previous_owner
  FROM public.push_subscriptions WHERE endpoint = p_endpoint;

  IF v_id IS NOT NULL AND v_previous_owner <> p_user_id THEN
    UPDATE nexus_private.push_deliveries
    SET status = 'cancelled', claim_token = NULL, finished_at = now(), updated_at = now(),
        last_error = 'subscription moved to another account'
    WHERE subscription_id = v_id AND status IN ('pending', 'claimed');
  END IF;

  INSERT INTO public.push_subscriptions AS s (user_id, endpoint, p256dh, auth)
  VALUES (p_user_id, p_endpoint, p_p256dh, p_auth)
  ON CONFLICT (endpoint) DO UPDATE
    SET user_id = EXCLUDED.user_id, p256dh = EXCLUDED.p256dh, auth = EXCLUDED.auth,
        failure_count = 0, created_at = CASE WHEN s.user_id = EXCLUDED.user_id THEN s.created_at ELSE now() END
  RETURNING id INTO v_id;

  WITH keep AS (
    SELECT id FROM public.push_subscriptions
    WHERE user_id = p_user_id
    ORDER BY updated_at DESC, created_at DESC, id
    LIMIT greatest(p_max_devices, 1)
  )
  DELETE FROM public.push_subscriptions s
  WHERE s.user_id = p_user_id AND s.id <> v_id AND s.id NOT IN (SELECT id FROM keep);
  GET DIAGNOSTICS v_evicted = ROW_COUNT;

  RETURN jsonb_build_object(
    'subscriptionId', v_id,
    'moved', v_previous_owner IS NOT NULL AND v_previous_owner <> p_user_id,
    'evicted', v_evicted);
END
$$;

-- notifications-subscribe (DELETE): only the caller's own endpoint.
CREATE OR REPLACE FUNCTION public.push_subscription_delete(p_user_id uuid, p_endpoint text) RETURNS jsonb
LANGUAGE sql SECURITY DEFINER SET search_path = '' AS $$
  WITH gone AS (
    DELETE FROM public.push_subscriptions
    WHERE endpoint = p_endpoint AND user_id = p_user_id
    RETURNING id
  )
  SELECT jsonb_build_object('removed', EXISTS (SELECT 1 FROM gone))
$$;

-- handle-rescue-request: rank from the database now, a per-user rate limit
-- that holds across Lambda instances (the profile row lock serialises one
-- sender's concurrent requests), then the flare and one high-urgency
-- notification per responder (Rescue or Medic, not the sender, not brigged),
-- all in this one transaction. Refusals write nothing.
CREATE OR REPLACE FUNCTION public.launch_rescue_flare(
  p_user_id uuid, p_flare_type text, p_location text, p_window_seconds integer
) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' AS $$
DECLARE
  v_rank text;
  v_callsign text;
  v_last timestamptz;
  v_retry integer;
  v_flare uuid;
  v_ids uuid[];
  v_devices integer;
BEGIN
  SELECT rank, callsign INTO v_rank, v_callsign
  FROM public.profiles WHERE id = p_user_id FOR UPDATE;
  IF NOT FOUND THEN
    RETURN jsonb_build_object('error', 'NO_PROFILE');
  END IF;
  IF public.rank_level(v_rank) < public.rank_level('scout') THEN
    RETURN jsonb_build_object('error', 'INSUFFICIENT_CLEARANCE', 'rank', v_rank, 'required', 'scout');
  END IF;

  SELECT max(created_at) INTO v_last FROM public.flares WHERE sender_id = p_user_id;
  IF v_last IS NOT NULL AND v_last > now() - make_interval(secs => p_window_seconds) THEN
    v_retry := greatest(1, ceil(extract(epoch FROM v_last + make_interval(secs => p_window_seconds) - now()))::integer);
    RETURN jsonb_build_object('error', 'RATE_LIMITED', 'retryAfter', v_retry);
  END IF;

  INSERT INTO public.flares (sender_id, flare_type, location)
  VALUES (p_user_id, p_flare_type, p_location)
  RETURNING id INTO v_flare;

  WITH queued AS (
    INSERT INTO public.notification_queue (recipient_id, type, title, message, payload, urgency)
    SELECT p.id,
           'RESCUE_FLARE',
           initcap(p_flare_type) || ' rescue flare',
           coalesce(v_callsign, 'A member') || ' needs ' || lower(p_flare_type) || ' assistance at ' || p_location,
           jsonb_build_object('flareId', v_flare, 'flareType', p_flare_type, 'location', p_location,
                              'senderId', p_user_id, 'senderCallsign', v_callsign),
           'high'
    FROM public.profiles p
    WHERE p.id <> p_user_id
      AND EXISTS (SELECT 1 FROM unnest(p.roles) r WHERE lower(r) IN ('rescue', 'medic'))
      AND NOT EXISTS (SELECT 1 FROM unnest(p.roles) r WHERE lower(r) = 'brigged')
    RETURNING id
  )
  SELECT coalesce(array_agg(id), '{}') INTO v_ids FROM queued;

  UPDATE public.flares SET responders_queued = cardinality(v_ids) WHERE id = v_flare;
  SELECT count(*) INTO v_devices FROM nexus_private.push_deliveries WHERE notification_id = ANY (v_ids);

  RETURN jsonb_build_object(
    'flareId', v_flare,
    'respondersQueued', cardinality(v_ids),
    'devicesQueued', v_devices,
    'notificationIds', to_jsonb(v_ids));
END
$$;

-- Fan-out, step 1: lease due deliveries (pending and due, or claimed by a
-- worker whose lease ran out) with SKIP LOCKED so concurrent workers split
-- the work. A lease lasts p_lease_seconds, stored in next_attempt_at; every
-- delivery in this claim carries the same claim token, and only a report
-- bearing it is accepted. Deliveries whose device went away or changed
-- owners are cancelled, and ones that exhausted their attempts are dead,
-- rather than sent. p_notification_ids (a JSON array of ids) narrows the
-- claim to those notifications (inline delivery of one flare).
CREATE OR REPLACE FUNCTION public.push_claim_deliveries(
  p_limit integer, p_lease_seconds integer, p_max_attempts integer,
  p_notification_ids jsonb DEFAULT NULL
) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' AS $$
DECLARE
  v_token uuid := gen_random_uuid();
  v_only uuid[];
  v_out jsonb;
  v_picked integer;
  v_dead integer;
BEGIN
  IF p_notification_ids IS NOT NULL THEN
    IF jsonb_typeof(p_notification_ids) <> 'array' THEN
      RAISE EXCEPTION 'p_notification_ids must be a JSON array' USING ERRCODE = '22023';
    END IF;
    v_only := ARRAY(SELECT jsonb_array_elements_text(p_notification_ids)::uuid);
  END IF;

  WITH picked AS (
    SELECT d.id
    FROM nexus_private.push_deliveries d
    WHERE d.status IN ('pending', 'claimed')
      AND d.next_attempt_at <= now()
      AND (v_only IS NULL OR d.notification_id = ANY (v_only))
    ORDER BY d.next_attempt_at
    LIMIT greatest(p_limit, 0)
    FOR UPDATE OF d SKIP LOCKED
  ), judged AS (
    SELECT d.id,
           CASE
             WHEN s.id IS NULL OR s.user_id <> n.recipient_id THEN 'cancelled'
             WHEN d.attempts >= p_max_attempts THEN 'dead'
             ELSE 'claimed'
           END AS next_status
    FROM picked
    JOIN nexus_private.push_deliveries d ON d.id = picked.id
    JOIN public.notification_queue n ON n.id = d.notification_id
    LEFT JOIN public.push_subscriptions s ON s.id = d.subscription_id
  ), updated AS (
    UPDATE nexus_private.push_deliveries d
    SET status = j.next_status,
        attempts = d.attempts + CASE WHEN j.next_status = 'claimed' THEN 1 ELSE 0 END,
        claim_token = CASE WHEN j.next_status = 'claimed' THEN v_token END,
        next_attempt_at = CASE WHEN j.next_status = 'claimed'
                               THEN now() + make_interval(secs => p_lease_seconds)
                               ELSE d.next_attempt_at END,
        finished_at = CASE WHEN j.next_status = 'claimed' THEN NULL ELSE now() END,
        last_error = CASE
                       WHEN j.next_status = 'cancelled' THEN 'subscription removed or moved before sending'
                       WHEN j.next_status = 'dead' THEN coalesce(d.last_error, 'worker lease expired')
                       ELSE d.last_error END,
        updated_at = now()
    FROM judged j
    WHERE d.id = j.id
    RETURNING d.id, d.status, d.attempts, d.notification_id, d.subscription_id
  )
  SELECT coalesce(jsonb_agg(jsonb_build_object(
           'deliveryId', u.id,
           'attempts', u.attempts,
           'endpoint', s.endpoint,
           'p256dh', s.p256dh,
           'auth', s.auth,
           'notification', jsonb_build_object(
             'id', n.id, 'type', n.type, 'title', n.title, 'message', n.message,
             'payload', n.payload, 'urgency', n.urgency, 'createdAt', n.created_at))
           ORDER BY u.id) FILTER (WHERE u.status = 'claimed'), '[]'::jsonb),
         count(*), count(*) FILTER (WHERE u.status = 'dead')
  INTO v_out, v_picked, v_dead
  FROM updated u
  LEFT JOIN public.notification_queue n ON n.id = u.notification_id
  LEFT JOIN public.push_subscriptions s ON s.id = u.subscription_id;

  -- picked counts the cancelled and dead rows too, so a caller knows more may be due.
  RETURN jsonb_build_object('claimToken', v_token, 'leaseSeconds', p_lease_seconds, 'picked', v_picked,
                            'dead', v_dead, 'deliveries', v_out);
END
$$;

-- Fan-out, step 2: record what the push services answered, for a whole
-- batch at once. p_results: [{deliveryId, outcome, status, error, retryInSeconds}]
-- with outcome one of
--   sent     201/202: the notification's sent_at and the device's last success are set
--   gone     404/410: the subscription is deleted (its open deliveries are then cancelled)
--   retry    429/5xx/timeout: due again after retryInSeconds, or dead after p_max_attempts
--   failed   other 4xx: kept with its reason
--   release  never attempted (the worker ran out of lease): due again now, attempt not counted
-- A report whose claim token no longer holds the lease (it expired and another
-- worker re-claimed) is ignored, so a stale worker cannot overwrite the outcome.
-- Lock order everywhere in this file: subscriptions, then notifications, each
-- in id order, then deliveries; so concurrent reports, subscribes and
-- unsubscribes cannot deadlock.
CREATE OR REPLACE FUNCTION public.push_report_deliveries(
  p_claim_token uuid, p_results jsonb, p_max_attempts integer
) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' AS $$
DECLARE
  v_reported jsonb;
  v_applied jsonb;
  v_sent_notifications uuid[];
  v_ok_subscriptions uuid[];
  v_bad_subscriptions uuid[];
  v_gone_subscriptions uuid[];
BEGIN
  IF jsonb_typeof(p_results) IS DISTINCT FROM 'array' THEN
    RAISE EXCEPTION 'p_results must be a JSON array' USING ERRCODE = '22023';
  END IF;

  -- What this claim still holds, read without locks so the locks below can
  -- be taken in the global order.
  SELECT coalesce(jsonb_agg(jsonb_build_object(
           'id', x.id, 'outcome', x.outcome, 'status', x.status, 'error', x.error,
           'retryIn', x.retry_in, 'notificationId', x.notification_id,
           'subscriptionId', x.subscription_id)), '[]'::jsonb)
  INTO v_reported
  FROM (
    SELECT DISTINCT ON (d.id) d.id, r.outcome, r.status, left(r.error, 500) AS error,
           greatest(coalesce(r."retryInSeconds", 0), 0) AS retry_in, d.notification_id, d.subscription_id
    FROM jsonb_to_recordset(p_results)
           AS r("deliveryId" bigint, outcome text, status integer, error text, "retryInSeconds" double precision)
    JOIN nexus_private.push_deliveries d
      ON d.id = r."deliveryId" AND d.status = 'claimed' AND d.claim_token = p_claim_token
    WHERE r.outcome IN ('sent', 'gone', 'retry', 'failed', 'release')
    ORDER BY d.id
  ) x;

  PERFORM 1 FROM public.push_subscriptions
  WHERE id IN (SELECT (e ->> 'subscriptionId')::uuid FROM jsonb_array_elements(v_reported) e
               WHERE e ->> 'outcome' <> 'release')
  ORDER BY id FOR UPDATE;
  PERFORM 1 FROM public.notification_queue
  WHERE id IN (SELECT (e ->> 'notificationId')::uuid FROM jsonb_array_elements(v_reported) e
               WHERE e ->> 'outcome' = 'sent')
    AND sent_at IS NULL
  ORDER BY id FOR UPDATE;

  -- The claim token is checked again under the row lock: the lease may have
  -- run out and been re-claimed since the read above.
  WITH r AS (
    SELECT * FROM jsonb_to_recordset(v_reported)
      AS x(id bigint, outcome text, status integer, error text, "retryIn" double precision,
           "notificationId" uuid, "subscriptionId" uuid)
  ), applied AS (
    UPDATE nexus_private.push_deliveries d
    SET status = CASE r.outcome
                   WHEN 'sent' THEN 'sent'
                   WHEN 'gone' THEN 'gone'
                   WHEN 'failed' THEN 'failed'
                   WHEN 'release' THEN 'pending'
                   ELSE CASE WHEN d.attempts >= p_max_attempts THEN 'dead' ELSE 'pending' END
                 END,
        attempts = CASE WHEN r.outcome = 'release' THEN greatest(d.attempts - 1, 0) ELSE d.attempts END,
        next_attempt_at = CASE r.outcome
                            WHEN 'retry' THEN now() + make_interval(secs => r."retryIn")
                            WHEN 'release' THEN now()
                            ELSE d.next_attempt_at END,
        claim_token = NULL,
        last_status = coalesce(r.status, d.last_status),
        last_error = CASE WHEN r.outcome IN ('sent', 'release') THEN d.last_error ELSE r.error END,
        finished_at = CASE
                        WHEN r.outcome IN ('sent', 'gone', 'failed') THEN now()
                        WHEN r.outcome = 'retry' AND d.attempts >= p_max_attempts THEN now()
                        ELSE NULL END,
        updated_at = now()
    FROM r
    WHERE d.id = r.id AND d.status = 'claimed' AND d.claim_token = p_claim_token
    RETURNING d.id, r.outcome, d.status, d.notification_id, d.subscription_id
  )
  SELECT coalesce(jsonb_agg(to_jsonb(applied)), '[]'::jsonb) INTO v_applied FROM applied;

  SELECT array_agg(DISTINCT (e ->> 'notification_id')::uuid) FILTER (WHERE e ->> 'outcome' = 'sent'),
         array_agg(DISTINCT (e ->> 'subscription_id')::uuid) FILTER (WHERE e ->> 'outcome' = 'sent'),
         array_agg(DISTINCT (e ->> 'subscription_id')::uuid) FILTER (WHERE e ->> 'outcome' IN ('retry', 'failed')),
         array_agg(DISTINCT (e ->> 'subscription_id')::uuid) FILTER (WHERE e ->> 'outcome' = 'gone')
  INTO v_sent_notifications, v_ok_subscriptions, v_bad_subscriptions, v_gone_subscriptions
  FROM jsonb_array_elements(v_applied) e;

  UPDATE public.notification_queue SET sent_at = now()
  WHERE id = ANY (coalesce(v_sent_notifications, '{}')) AND sent_at IS NULL;
  UPDATE public.push_subscriptions SET last_success_at = now(), failure_count = 0
  WHERE id = ANY (coalesce(v_ok_subscriptions, '{}'));
  UPDATE public.push_subscriptions SET failure_count = failure_count + 1
  WHERE id = ANY (coalesce(v_bad_subscriptions, '{}')) AND NOT (id = ANY (coalesce(v_ok_subscriptions, '{}')));
  -- The foreign key sets the device's other deliveries' subscription to NULL;
  -- the next claim cancels the open ones.
  DELETE FROM public.push_subscriptions WHERE id = ANY (coalesce(v_gone_subscriptions, '{}'));

  RETURN jsonb_build_object(
    'recorded', (SELECT coalesce(jsonb_object_agg(outcome, n), '{}'::jsonb)
                 FROM (SELECT e ->> 'outcome' AS outcome, count(*) AS n
                       FROM jsonb_array_elements(v_applied) e GROUP BY 1) c),
    'dead', (SELECT count(*) FROM jsonb_array_elements(v_applied) e WHERE e ->> 'status' = 'dead'),
    'stale', jsonb_array_length(p_results) - jsonb_array_length(v_applied));
END
$$;

REVOKE ALL ON FUNCTION nexus_private.notification_queue_fan_out() FROM PUBLIC, anon, authenticated;
REVOKE ALL ON FUNCTION public.push_subscription_upsert(uuid, text, text, text, integer) FROM PUBLIC, anon, authenticated;
REVOKE ALL ON FUNCTION public.push_subscription_delete(uuid, text) FROM PUBLIC, anon, authenticated;
REVOKE ALL ON FUNCTION public.launch_rescue_flare(uuid, text, text, integer) FROM PUBLIC, anon, authenticated;
REVOKE ALL ON FUNCTION public.push_claim_deliveries(integer, integer, integer, jsonb) FROM PUBLIC, anon, authenticated;
REVOKE ALL ON FUNCTION public.push_report_deliveries(uuid, jsonb, integer) FROM PUBLIC, anon, authenticated;
GRANT EXECUTE ON FUNCTION public.push_subscription_upsert(uuid, text, text, text, integer) TO service_role;
GRANT EXECUTE ON FUNCTION public.push_subscription_delete(uuid, text) TO service_role;
GRANT EXECUTE ON FUNCTION public.launch_rescue_flare(uuid, text, text, integer) TO service_role;
GRANT EXECUTE ON FUNCTION public.push_claim_deliveries(integer, integer, integer, jsonb) TO service_role;
GRANT EXECUTE ON FUNCTION public.push_report_deliveries(uuid, jsonb, integer) TO service_role;
