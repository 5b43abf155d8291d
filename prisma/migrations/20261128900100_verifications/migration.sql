-- Verifications: a code sent to a number and checked by the product team.
-- The code itself is never stored: it is derived from VERIFY_SECRET and the row's random salt.
CREATE TABLE "verifications" (
    "id" TEXT NOT NULL,
    "team" TEXT NOT NULL,
    "to" TEXT NOT NULL,
    "status" TEXT NOT NULL DEFAULT 'pending',
    "code_salt" TEXT NOT NULL,
    "attempts" INTEGER NOT NULL DEFAULT 0,
    "sends" INTEGER NOT NULL DEFAULT 0,
    "last_sent_at" TIMESTAMPTZ(3),
    "expires_at" TIMESTAMPTZ(3) NOT NULL,
    "reference" TEXT,
    "metadata" JSONB,
    "sequence" INTEGER NOT NULL DEFAULT 1,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "approved_at" TIMESTAMPTZ(3),
    CONSTRAINT "verifications_pkey" PRIMARY KEY ("id"),
    CONSTRAINT "verifications_status_check"
      CHECK ("status" IN ('pending', 'approved', 'expired', 'max_attempts_reached', 'canceled'))
);
-- At most one pending verification per number and team: a second request for it is a resend.
CREATE UNIQUE INDEX "verifications_pending_to_key" ON "verifications" ("team", "to") WHERE "status" = 'pending';
-- The expiry sweep, and the funnel by hour.
CREATE INDEX "verifications_pending_expires_at_idx" ON "verifications" ("expires_at") WHERE "status" = 'pending';
CREATE INDEX "verifications_created_at_idx" ON "verifications" ("created_at", "team");
-- A verification's messages (the column may exist already: teams added it with reference and metadata).
ALTER TABLE "messages" ADD COLUMN IF NOT EXISTS "verification_id" TEXT;
CREATE INDEX "messages_verification_id_idx" ON "messages" ("verification_id") WHERE "verification_id" IS NOT NULL;

CREATE FUNCTION "otp_verification_json"(v "verifications") RETURNS JSONB LANGUAGE sql STABLE AS $$
  SELECT jsonb_build_object(
    'id', v.id, 'to', v."to", 'status', v.status, 'expiresAt', otp_iso(v.expires_at),
    'checksLeft', greatest(0, 5 - v.attempts), 'sendsLeft', greatest(0, 5 - v.sends),
    'reference', v.reference, 'metadata', v.metadata,
    'createdAt', otp_iso(v.created_at), 'updatedAt', otp_iso(v.updated_at), 'approvedAt', otp_iso(v.approved_at),
    'team', v.team, 'sequence', v.sequence)
$$;

CREATE FUNCTION "verifications_count_status_change"() RETURNS TRIGGER LANGUAGE plpgsql AS $$
BEGIN
  NEW.sequence := OLD.sequence + 1;
  RETURN NEW;
END
$$;

CREATE TRIGGER "verifications_count_status_change" BEFORE UPDATE OF "status" ON "verifications"
  FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status) EXECUTE FUNCTION "verifications_count_status_change"();

-- `verification.status` callbacks, in the same statement as the change (see the status callbacks migration).
CREATE FUNCTION "verifications_enqueue_callbacks"() RETURNS TRIGGER LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO callback_deliveries (event_id, endpoint_id, team, type, subject, sequence, payload)
  SELECT 'ver_' || NEW.id || '_' || NEW.sequence, e.id, NEW.team, 'verification.status', NEW.id, NEW.sequence,
         jsonb_build_object('type', 'verification.status', 'timestamp', otp_iso(now()),
                            'data', otp_verification_json(NEW))
    FROM callback_endpoints e
   WHERE e.team = NEW.team AND e.enabled AND 'verification.status' = ANY (e.events);
  RETURN NULL;
END
$$;

CREATE TRIGGER "verifications_enqueue_callbacks" AFTER UPDATE OF "status" ON "verifications"
  FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status) EXECUTE FUNCTION "verifications_enqueue_callbacks"();

-- Per hour and team: verifications started, how many got a message delivered or read, how they ended, and
-- the median time from start (the first send) to approval.
CREATE VIEW "ops_verification_funnel" AS
SELECT date_trunc('hour', v.created_at) AS hour,
       v.team,
       count(*) AS started,
       count(*) FILTER (WHERE d.delivered) AS delivered,
       count(*) FILTER (WHERE d.read) AS read,
       count(*) FILTER (WHERE v.status = 'approved') AS approved,
       count(*) FILTER (WHERE v.status = 'expired') AS expired,
       count(*) FILTER (WHERE v.status = 'max_attempts_reached') AS max_attempts_reached,
       count(*) FILTER (WHERE v.status = 'canceled') AS canceled,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM v.approved_at - v.created_at))
         FILTER (WHERE v.approved_at IS NOT NULL) AS median_seconds_to_approval
  FROM verifications v
  CROSS JOIN LATERAL (
    SELECT coalesce(bool_or(m.delivered_at IS NOT NULL OR m.read_at IS NOT NULL), false) AS delivered,
           coalesce(bool_or(m.read_at IS NOT NULL), false) AS read
      FROM messages m WHERE m.verification_id = v.id) d
 GROUP BY 1, 2;
