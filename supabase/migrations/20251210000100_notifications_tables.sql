-- Notifications: browser push subscriptions, the runbook's notification queue,
-- rescue flares, and per-device delivery state (private machinery).
--
-- Contract for producers (academy, flares, ...): insert a row into
-- public.notification_queue (recipient_id, type, title, message, payload) and
-- nothing else. A trigger (next migration) creates one delivery per device of
-- the recipient; the push fan-out picks those up.

CREATE TABLE public.push_subscriptions (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id uuid NOT NULL REFERENCES public.profiles (id) ON DELETE CASCADE,
  -- our servers POST to it, so its shape is checked by the handler too
  endpoint text NOT NULL UNIQUE CHECK (char_length(endpoint) BETWEEN 8 AND 2048),
  p256dh text NOT NULL CHECK (p256dh ~ '^[A-Za-z0-9_-]{86,88}$'),
  auth text NOT NULL CHECK (auth ~ '^[A-Za-z0-9_-]{22,24}$'),
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  last_success_at timestamptz,
  -- consecutive failed sends; reset by a success
  failure_count integer NOT NULL DEFAULT 0 CHECK (failure_count >= 0)
);
CREATE INDEX push_subscriptions_user_id_idx ON public.push_subscriptions (user_id, created_at);

CREATE TABLE public.notification_queue (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  recipient_id uuid NOT NULL REFERENCES public.profiles (id) ON DELETE CASCADE,
  type text NOT NULL CHECK (type ~ '^[A-Z][A-Z0-9_]{0,63}$'),
  title text NOT NULL CHECK (char_length(title) BETWEEN 1 AND 200),
  message text NOT NULL DEFAULT '' CHECK (char_length(message) <= 1000),
  payload jsonb NOT NULL DEFAULT '{}'::jsonb,
  -- Web Push Urgency (RFC 8030 §5.3); flares are high
  urgency text NOT NULL DEFAULT 'normal' CHECK (urgency IN ('very-low', 'low', 'normal', 'high')),
  created_at timestamptz NOT NULL DEFAULT now(),
  -- set once any device of the recipient accepted it
  sent_at timestamptz,
  read_at timestamptz
);
CREATE INDEX notification_queue_recipient_idx ON public.notification_queue (recipient_id, created_at DESC);
-- the runbook's monitoring query (pending by type)
CREATE INDEX notification_queue_unsent_idx ON public.notification_queue (type, created_at) WHERE sent_at IS NULL;

CREATE TABLE public.flares (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  sender_id uuid NOT NULL REFERENCES public.profiles (id) ON DELETE CASCADE,
  flare_type text NOT NULL CHECK (flare_type IN ('MEDICAL', 'COMBAT')),
  location text NOT NULL CHECK (char_length(location) BETWEEN 1 AND 200),
  status text NOT NULL DEFAULT 'ACTIVE' CHECK (status IN ('ACTIVE', 'RESOLVED')),
  responders_queued integer NOT NULL DEFAULT 0,
  created_at timestamptz NOT NULL DEFAULT now(),
  resolved_at timestamptz
);
-- the per-user rate limit looks up the sender's latest flare
CREATE INDEX flares_sender_created_idx ON public.flares (sender_id, created_at DESC);

-- One row per (notification, device). status:
--   pending   waiting for next_attempt_at
--   claimed   leased by a fan-out worker until next_attempt_at; a worker that
--             died mid-send leaves it to be re-claimed after that
--   sent      the push service accepted it (201/202)
--   gone      the push service said 404/410; the subscription was deleted
--   failed    a non-retryable 4xx; last_error keeps the reason
--   dead      retryable failures exhausted max attempts
--   cancelled the subscription went away or moved to another user before sending
CREATE TABLE nexus_private.push_deliveries (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  notification_id uuid NOT NULL REFERENCES public.notification_queue (id) ON DELETE CASCADE,
  subscription_id uuid REFERENCES public.push_subscriptions (id) ON DELETE SET NULL,
  status text NOT NULL DEFAULT 'pending'
    CHECK (status IN ('pending', 'claimed', 'sent', 'gone', 'failed', 'dead', 'cancelled')),
  attempts integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
  next_attempt_at timestamptz NOT NULL DEFAULT now(),
  -- a report is accepted only from the worker holding the current lease
  claim_token uuid,
  last_status integer,
  last_error text,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  finished_at timestamptz,
  -- also the index for the notification_id foreign key
  UNIQUE (notification_id, subscription_id)
);
CREATE INDEX push_deliveries_subscription_idx ON nexus_private.push_deliveries (subscription_id);
-- the claim scans only open work (due, or leases that expired), oldest first
CREATE INDEX push_deliveries_due_idx ON nexus_private.push_deliveries (next_attempt_at)
  WHERE status IN ('pending', 'claimed');
