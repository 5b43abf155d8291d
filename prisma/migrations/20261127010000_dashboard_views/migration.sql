-- Views for ops dashboards (docs/ops.md). Read-only, over the stable tables of contract section 6.
-- Hours and days are UTC buckets of the named column.

-- Messages created per hour, by their current status.
CREATE VIEW "ops_messages_per_hour" AS
SELECT date_trunc('hour', "created_at", 'UTC') AS "hour",
       "status",
       count(*)::bigint AS "messages"
FROM "messages"
GROUP BY 1, 2;

-- Delivery latency (sent -> delivered) and read latency (delivered -> read) in seconds, per hour the
-- message was created. Only messages that have both timestamps count for each latency.
CREATE VIEW "ops_latency_per_hour" AS
SELECT date_trunc('hour', "created_at", 'UTC') AS "hour",
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
GROUP BY 1;

-- Failed messages per day (of failed_at) and reason.
CREATE VIEW "ops_failure_reasons_per_day" AS
SELECT date_trunc('day', "failed_at", 'UTC') AS "day",
       "error_code",
       "error_message",
       count(*)::bigint AS "messages"
FROM "messages"
WHERE "status" = 'FAILED'
GROUP BY 1, 2, 3;

-- Messages still PENDING or SENT, with how long they have been waiting: filter with
-- WHERE "age" > interval '10 minutes'. "in_status_for" is the time since the last status change.
CREATE VIEW "ops_stuck_messages" AS
SELECT "uuid",
       "to",
       "status",
       "created_at",
       "sent_at",
       now() - "created_at" AS "age",
       now() - COALESCE("sent_at", "created_at") AS "in_status_for"
FROM "messages"
WHERE "status" IN ('PENDING', 'SENT');
