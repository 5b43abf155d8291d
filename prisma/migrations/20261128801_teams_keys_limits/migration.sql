-- Teams, API keys stored as hashes, reference/metadata on messages and the shared state of the abuse limits.

-- Every message belongs to the team whose key sent it (rows written before teams existed: 'default').
ALTER TABLE "messages" ADD COLUMN "team" TEXT NOT NULL DEFAULT 'default';
-- The caller's own id for the message and its free-form labels (validated on the way in).
ALTER TABLE "messages" ADD COLUMN "reference" TEXT;
ALTER TABLE "messages" ADD COLUMN "metadata" JSONB;
-- Set when a verification sent the message (a later feature; null until then).
ALTER TABLE "messages" ADD COLUMN "verification_id" TEXT;

-- The list is always within one team, newest first; with `reference` it is one team's messages for that id.
CREATE INDEX "messages_team_created_at_uuid_idx" ON "messages"("team", "created_at" DESC, "uuid" DESC);
CREATE INDEX "messages_team_reference_created_at_uuid_idx" ON "messages"("team", "reference", "created_at" DESC, "uuid" DESC);

-- API keys managed with `npm run keys`: only a sha256 of the key is kept (see README, API keys).
CREATE TABLE "api_keys" (
    "id" SERIAL NOT NULL,
    "team" TEXT NOT NULL,
    "name" TEXT NOT NULL,
    "prefix" TEXT NOT NULL,
    "key_hash" TEXT NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "last_used_at" TIMESTAMPTZ(3),
    "revoked_at" TIMESTAMPTZ(3),

    CONSTRAINT "api_keys_pkey" PRIMARY KEY ("id")
);
CREATE UNIQUE INDEX "api_keys_key_hash_key" ON "api_keys"("key_hash");

-- One row per send attempt to a number (all teams): the per-recipient limit counts these. Rows older than the
-- longest window are deleted as the same number is sent to again.
CREATE TABLE "recipient_sends" (
    "id" BIGSERIAL NOT NULL,
    "to" TEXT NOT NULL,
    "team" TEXT NOT NULL,
    "sent_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "recipient_sends_pkey" PRIMARY KEY ("id")
);
CREATE INDEX "recipient_sends_to_sent_at_idx" ON "recipient_sends"("to", "sent_at");

-- The per-key request counters, shared by all instances: one row per key and fixed window.
CREATE TABLE "rate_limit_counters" (
    "key" TEXT NOT NULL,
    "hits" INTEGER NOT NULL,
    "reset_at" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "rate_limit_counters_pkey" PRIMARY KEY ("key")
);

-- The dashboard views, now per team.
DROP VIEW "ops_messages_per_hour";
CREATE VIEW "ops_messages_per_hour" AS
SELECT date_trunc('hour', "created_at", 'UTC') AS "hour",
       "team",
       "status",
       count(*)::bigint AS "messages"
FROM "messages"
GROUP BY 1, 2, 3;

DROP VIEW "ops_latency_per_hour";
CREATE VIEW "ops_latency_per_hour" AS
SELECT date_trunc('hour', "created_at", 'UTC') AS "hour",
       "team",
       count(*)::bigint AS "messages",
       count(*) FILTER (WHERE "delivered_at" IS NOT NULL AND "sent_at" IS NOT NULL)::bigint AS "delivered",
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM "delivered_at" - "sent_at")) AS "delivery_p50_s",
       percentile_cont(0.9) WITHIN GROUP (ORDER BY extract(epoch FROM "delivered_at" - "sent_at")) AS "delivery_p90_s",
       percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM "delivered_at" - "sent_at")) AS "delivery_p99_s",
       count(*) FILTER (WHERE "read_at" IS NOT NULL AND "delivered_at" IS NOT NULL)::bigint AS "read",
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM "read_at" - "delivered_at")) AS "read_p50_s",
       percentile_cont(0.9) WITHIN GROUP (ORDER BY extract(epoch FROM "read_at" - "delivered_at")) AS "read_p90_s",
       percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM "read_at" - "delivered_at")) AS "read_p99_s"
FROM "messages"
GROUP BY 1, 2;

DROP VIEW "ops_failure_reasons_per_day";
CREATE VIEW "ops_failure_reasons_per_day" AS
SELECT date_trunc('day', "failed_at", 'UTC') AS "day",
       "team",
       "error_code",
       "error_message",
       count(*)::bigint AS "messages"
FROM "messages"
WHERE "status" = 'FAILED'
GROUP BY 1, 2, 3, 4;

DROP VIEW "ops_stuck_messages";
CREATE VIEW "ops_stuck_messages" AS
SELECT "uuid",
       "team",
       "to",
       "status",
       "created_at",
       "sent_at",
       now() - "created_at" AS "age",
       now() - COALESCE("sent_at", "created_at") AS "in_status_for"
FROM "messages"
WHERE "status" IN ('PENDING', 'SENT');
