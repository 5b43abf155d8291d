-- Status callbacks: endpoints a team registers, and one delivery row per (event, endpoint).
-- The rows are written by triggers in the same statement as the status change they report, so every path
-- that changes a status (webhook, reconciler, expiry, sandbox, anything later) fills the outbox, and a
-- rolled-back change never announces anything.

-- Counts the status changes of a message: callbacks carry it so a consumer can drop an older event that
-- arrives late. A new message is at 1 (PENDING).
ALTER TABLE "messages" ADD COLUMN "sequence" INTEGER NOT NULL DEFAULT 1;

CREATE TABLE "callback_endpoints" (
    "id" TEXT NOT NULL,
    "team" TEXT NOT NULL,
    "url" TEXT NOT NULL,
    "events" TEXT[] NOT NULL DEFAULT ARRAY['message.status', 'verification.status']::TEXT[],
    "enabled" BOOLEAN NOT NULL DEFAULT true,
    "disabled_reason" TEXT,
    -- The signing secret is derived from the service's CALLBACKS_SECRET and this version; it is never stored.
    "secret_version" INTEGER NOT NULL DEFAULT 1,
    -- First failure since the last success: five days of failures disable the endpoint.
    "failing_since" TIMESTAMPTZ(3),
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT "callback_endpoints_pkey" PRIMARY KEY ("id")
);
CREATE INDEX "callback_endpoints_team_idx" ON "callback_endpoints" ("team") WHERE "enabled";

CREATE TABLE "callback_deliveries" (
    "id" BIGSERIAL NOT NULL,
    -- webhook-id: one per event, the same on every retry.
    "event_id" TEXT NOT NULL,
    "endpoint_id" TEXT NOT NULL,
    "team" TEXT NOT NULL,
    "type" TEXT NOT NULL,
    -- What the event is about (a message uuid, a verification id): events of one subject go out in order.
    "subject" TEXT NOT NULL,
    "sequence" INTEGER NOT NULL,
    "payload" JSONB NOT NULL,
    "status" TEXT NOT NULL DEFAULT 'pending',
    "attempts" INTEGER NOT NULL DEFAULT 0,
    "next_attempt_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "locked_until" TIMESTAMPTZ(3),
    "last_attempt_at" TIMESTAMPTZ(3),
    "last_status_code" INTEGER,
    "last_error" TEXT,
    "last_response" TEXT,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "delivered_at" TIMESTAMPTZ(3),
    CONSTRAINT "callback_deliveries_pkey" PRIMARY KEY ("id"),
    CONSTRAINT "callback_deliveries_endpoint_fkey" FOREIGN KEY ("endpoint_id")
      REFERENCES "callback_endpoints" ("id") ON DELETE CASCADE,
    CONSTRAINT "callback_deliveries_status_check" CHECK ("status" IN ('pending', 'delivered', 'failed'))
);
-- The workers' claim: due deliveries per endpoint, and the earlier pending event of the same subject.
CREATE INDEX "callback_deliveries_due_idx" ON "callback_deliveries" ("endpoint_id", "next_attempt_at", "id")
  WHERE "status" = 'pending';
CREATE INDEX "callback_deliveries_subject_idx" ON "callback_deliveries" ("endpoint_id", "subject", "sequence")
  WHERE "status" = 'pending';
-- The team's list (newest first, by status) and replay by time.
CREATE INDEX "callback_deliveries_team_idx" ON "callback_deliveries" ("team", "id" DESC);
CREATE INDEX "callback_deliveries_team_status_idx" ON "callback_deliveries" ("team", "status", "id" DESC);
CREATE INDEX "callback_deliveries_created_at_idx" ON "callback_deliveries" ("created_at");

-- ISO 8601 in UTC with milliseconds, as the API writes times.
CREATE FUNCTION "otp_iso"(ts TIMESTAMPTZ) RETURNS TEXT LANGUAGE sql STABLE AS $$
  SELECT to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
$$;

-- The message as the API reads it (without events), plus its team and sequence.
CREATE FUNCTION "otp_message_json"(m "messages") RETURNS JSONB LANGUAGE sql STABLE AS $$
  SELECT jsonb_build_object(
    'uuid', m.uuid, 'to', m."to", 'status', m.status,
    'createdAt', otp_iso(m.created_at), 'updatedAt', otp_iso(m.updated_at),
    'sentAt', otp_iso(m.sent_at), 'deliveredAt', otp_iso(m.delivered_at), 'readAt', otp_iso(m.read_at),
    'failedAt', otp_iso(m.failed_at), 'expiredAt', otp_iso(m.expired_at),
    'error', CASE WHEN m.error_code IS NULL AND m.error_message IS NULL THEN NULL
                  ELSE jsonb_build_object('code', m.error_code, 'message', m.error_message) END,
    'reference', m.reference, 'metadata', m.metadata, 'verificationId', m.verification_id,
    'team', m.team, 'sequence', m.sequence)
$$;

CREATE FUNCTION "messages_count_status_change"() RETURNS TRIGGER LANGUAGE plpgsql AS $$
BEGIN
  NEW.sequence := OLD.sequence + 1;
  RETURN NEW;
END
$$;

CREATE TRIGGER "messages_count_status_change" BEFORE UPDATE OF "status" ON "messages"
  FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status) EXECUTE FUNCTION "messages_count_status_change"();

CREATE FUNCTION "messages_enqueue_callbacks"() RETURNS TRIGGER LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO callback_deliveries (event_id, endpoint_id, team, type, subject, sequence, payload)
  SELECT 'msg_' || NEW.uuid || '_' || NEW.sequence, e.id, NEW.team, 'message.status', NEW.uuid, NEW.sequence,
         jsonb_build_object('type', 'message.status', 'timestamp', otp_iso(now()), 'data', otp_message_json(NEW))
    FROM callback_endpoints e
   WHERE e.team = NEW.team AND e.enabled AND 'message.status' = ANY (e.events);
  RETURN NULL;
END
$$;

CREATE TRIGGER "messages_enqueue_callbacks" AFTER UPDATE OF "status" ON "messages"
  FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status) EXECUTE FUNCTION "messages_enqueue_callbacks"();

-- Delivery health per endpoint, for dashboards.
CREATE VIEW "ops_callback_health" AS
SELECT e.id AS endpoint_id, e.team, e.url, e.enabled, e.disabled_reason, e.failing_since,
       count(*) FILTER (WHERE d.status = 'pending') AS pending,
       count(*) FILTER (WHERE d.status = 'failed') AS failed,
       count(*) FILTER (WHERE d.status = 'delivered' AND d.delivered_at > now() - interval '24 hours') AS delivered_24h,
       min(d.created_at) FILTER (WHERE d.status = 'pending') AS oldest_pending_at,
       max(d.last_attempt_at) AS last_attempt_at,
       (array_agg(d.last_error ORDER BY d.last_attempt_at DESC NULLS LAST) FILTER (WHERE d.last_error IS NOT NULL))[1]
         AS last_error
  FROM callback_endpoints e
  LEFT JOIN callback_deliveries d ON d.endpoint_id = e.id
 GROUP BY e.id;
