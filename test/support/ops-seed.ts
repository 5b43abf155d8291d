import type pg from "pg";

// One row per message to write: its number n, uuid, creation time, final status and failure reason (1-3).
const SEED = `(
  SELECT n, $2 || '-' || n AS uuid,
         now() - (n::float8 / $1 * $3) * interval '1 hour' - interval '1 minute' AS created_at,
         CASE
           WHEN n % 20 = 0 THEN 'FAILED'
           WHEN n % 20 = 1 THEN 'EXPIRED'
           WHEN n % 20 IN (2, 3) AND n::float8 / $1 * $3 < 2 THEN (ARRAY['SENT', 'PENDING'])[1 + n % 2]
           WHEN n % 20 < 9 THEN 'DELIVERED'
           ELSE 'READ'
         END AS status,
         CASE WHEN (n / 20) % 6 < 3 THEN 1 WHEN (n / 20) % 6 < 5 THEN 2 ELSE 3 END AS reason
  FROM generate_series(1, $1::int) AS n
) AS seed`;

/**
 * Writes `count` messages spread evenly over the last `spanHours` (newest first), in the mix a busy day has:
 * mostly READ and DELIVERED, 5% FAILED over three reasons, 5% EXPIRED, and some PENDING/SENT in the last
 * two hours (a few of them stuck). Each message gets its `api` PENDING event and one event for its
 * final status, from the webhook, the reconciler (every 10th delivered one) or the expiry job.
 * Set-based (generate_series): a million rows take seconds. Uuids are `<prefix>-<n>`.
 */
export async function seedOpsHistory(
  pool: pg.Pool | pg.PoolClient,
  { count, spanHours, prefix = "ops" }: { count: number; spanHours: number; prefix?: string },
): Promise<void> {
  const values = [count, prefix, spanHours];
  await pool.query(
    `INSERT INTO messages (uuid, "to", status, text_length, created_at, updated_at, sent_at, delivered_at, read_at,
       failed_at, expired_at, error_code, error_message)
     SELECT uuid, '38761' || (100000 + n % 800000), status::message_status, 6, created_at, created_at,
            CASE WHEN status NOT IN ('PENDING', 'FAILED') THEN created_at + (1 + n % 7) * interval '1 second' END,
            CASE WHEN status IN ('DELIVERED', 'READ') THEN created_at + (3 + n % 7 + n % 31) * interval '1 second' END,
            CASE WHEN status = 'READ' THEN created_at + (40 + n % 7 + n % 31 + n::bigint * 7919 % 900) * interval '1 second' END,
            CASE WHEN status = 'FAILED' THEN created_at + interval '4 seconds' END,
            CASE WHEN status = 'EXPIRED' THEN least(created_at + interval '1 day', now()) END,
            CASE WHEN status = 'FAILED' THEN (ARRAY['131026', '131047', '130472'])[reason] END,
            CASE WHEN status = 'FAILED' THEN (ARRAY['Message undeliverable', 'Re-engagement message',
              'User''s number is part of an experiment'])[reason] END
     FROM ${SEED}`,
    values,
  );
  await pool.query(
    `INSERT INTO message_events (uuid, status, outcome, occurred_at, received_at, source)
     SELECT uuid, 'PENDING', 'applied', created_at, created_at, 'api' FROM ${SEED}
     UNION ALL
     SELECT uuid, status::message_status, 'applied', at, at,
            CASE WHEN status = 'EXPIRED' THEN 'expiry' WHEN n % 10 = 4 THEN 'reconcile' ELSE 'webhook' END
     FROM ${SEED}, LATERAL (SELECT CASE WHEN status = 'EXPIRED' THEN least(created_at + interval '1 day', now())
                                   ELSE created_at + interval '30 seconds' END AS at) AS event
     WHERE status <> 'PENDING'`,
    values,
  );
}
