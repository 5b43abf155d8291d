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
         CASE WHEN (n / 20) % 6 < 3 THEN 1 WHEN (n / 20) % 6 < 5 THEN 2 ELSE 3 END AS reason,
         (ARRAY['growth', 'growth', 'billing'])[1 + n % 3] AS team
  FROM generate_series(1, $1::int) AS n
) AS seed`;

/**
 * Writes `count` messages spread evenly over the last `spanHours` (newest first), in the mix a busy day has:
 * mostly READ and DELIVERED, 5% FAILED over three reasons, 5% EXPIRED, and some PENDING/SENT in the last
 * two hours (a few of them stuck). Each message gets its `api` PENDING event and one event for its
 * final status, from the webhook, the reconciler (every 10th delivered one) or the expiry job. Two teams:
 * two thirds `growth`, one third `billing`.
 * Set-based (generate_series): a million rows take seconds. Uuids are `<prefix>-<n>`.
 */
export async function seedOpsHistory(
  pool: pg.Pool | pg.PoolClient,
  { count, spanHours, prefix = "ops" }: { count: number; spanHours: number; prefix?: string },
): Promise<void> {
  const values = [count, prefix, spanHours];
  await pool.query(
    `INSERT INTO messages (uuid, "to", status, text_length, created_at, updated_at, sent_at, delivered_at, read_at,
       failed_at, expired_at, error_code, error_message, team)
     SELECT uuid, '38761' || (100000 + n % 800000), status::message_status, 6, created_at, created_at,
            CASE WHEN status NOT IN ('PENDING', 'FAILED') THEN created_at + (1 + n % 7) * interval '1 second' END,
            CASE WHEN status IN ('DELIVERED', 'READ') THEN created_at + (3 + n % 7 + n % 31) * interval '1 second' END,
            CASE WHEN status = 'READ' THEN created_at + (40 + n % 7 + n % 31 + n::bigint * 7919 % 900) * interval '1 second' END,
            CASE WHEN status = 'FAILED' THEN created_at + interval '4 seconds' END,
            CASE WHEN status = 'EXPIRED' THEN least(created_at + interval '1 day', now()) END,
            CASE WHEN status = 'FAILED' THEN (ARRAY['131026', '131047', '130472'])[reason] END,
            CASE WHEN status = 'FAILED' THEN (ARRAY['Message undeliverable', 'Re-engagement message',
              'User''s number is part of an experiment'])[reason] END,
            team
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

/**
 * What the callbacks and verifications leave behind, for messages seeded by `seedOpsHistory` with `prefix`:
 * - four endpoints: growth's `ok` and `failing` (failing for 3 hours), billing's `ok` and `off` (disabled by a 410);
 * - three callback deliveries per message, spread over the team's endpoints: delivered, or failed (every 7th,
 *   and all of the disabled endpoint's), or pending (the failing endpoint's of the last 2 hours and 10% of the
 *   others' there), plus six delivered ones from 30 hours ago and one pending for 3 hours;
 * - a verification for every 5th message (and every 20th + 2, some still pending), of its team, linked to it: approved (20-109 s after the start) when
 *   the message was read, or delivered every other time, max_attempts_reached or canceled now and then, expired
 *   when it failed or expired, pending (expiring in 10 minutes) while it is PENDING or SENT.
 * Nothing here changes a status, so no trigger writes more deliveries. Endpoint ids are `ep_<prefix>_<name>`.
 */
export async function seedOpsFeatures(pool: pg.Pool | pg.PoolClient, { prefix = "ops" } = {}): Promise<void> {
  await pool.query(
    `INSERT INTO callback_endpoints (id, team, url, enabled, disabled_reason, failing_since)
     VALUES ('ep_' || $1 || '_growth_ok', 'growth', 'https://growth.example/otp?token=secret', true, NULL, NULL),
            ('ep_' || $1 || '_growth_failing', 'growth', 'https://hooks.growth.example/status', true, NULL,
             now() - interval '3 hours'),
            ('ep_' || $1 || '_billing_ok', 'billing', 'https://billing.example/callbacks', true, NULL, NULL),
            ('ep_' || $1 || '_billing_off', 'billing', 'https://old.billing.example/cb', false, '410 Gone', NULL)`,
    [prefix],
  );
  // Each message's deliveries go to its team's endpoints; the failing one keeps what it gets pending.
  await pool.query(
    `INSERT INTO callback_deliveries (event_id, endpoint_id, team, type, subject, sequence, payload, status,
       attempts, next_attempt_at, last_attempt_at, last_status_code, last_error, created_at, delivered_at)
     SELECT 'msg_' || m.uuid || '_' || k, e.id, m.team, 'message.status', m.uuid, k, '{}'::jsonb, d.status,
            CASE d.status WHEN 'delivered' THEN 1 WHEN 'failed' THEN 8 ELSE 2 END,
            now() + interval '1 hour', m.created_at + k * interval '1 second',
            CASE d.status WHEN 'delivered' THEN 204 ELSE 500 END,
            CASE WHEN d.status <> 'delivered' THEN 'HTTP 500' END,
            m.created_at + k * interval '1 second',
            CASE WHEN d.status = 'delivered' THEN m.created_at + k * interval '2 seconds' END
     FROM (SELECT *, split_part(uuid, '-', 2)::int AS n FROM messages WHERE uuid LIKE $1 || '-%') m
     CROSS JOIN generate_series(2, 4) AS k
     JOIN callback_endpoints e ON e.id = 'ep_' || $1 || '_' || m.team || CASE
       WHEN m.team = 'growth' AND (m.n + k) % 4 = 0 THEN '_failing'
       WHEN m.team = 'billing' AND (m.n + k) % 5 = 0 THEN '_off' ELSE '_ok' END
     CROSS JOIN LATERAL (SELECT CASE
       WHEN e.id LIKE '%_failing' THEN CASE WHEN m.created_at > now() - interval '2 hours' THEN 'pending' ELSE 'delivered' END
       WHEN e.id LIKE '%_off' THEN 'failed'
       WHEN (m.n * k) % 7 = 0 THEN 'failed'
       WHEN m.n % 10 = 1 AND m.created_at > now() - interval '2 hours' THEN 'pending'
       ELSE 'delivered' END AS status) d`,
    [prefix],
  );
  await pool.query(
    `INSERT INTO callback_deliveries (event_id, endpoint_id, team, type, subject, sequence, payload, status,
       attempts, next_attempt_at, created_at, delivered_at)
     SELECT 'old_' || $1 || '_' || k, 'ep_' || $1 || '_' || (ARRAY['growth_ok', 'billing_ok'])[1 + k % 2],
            (ARRAY['growth', 'billing'])[1 + k % 2], 'message.status', 'old-' || k, 2, '{}'::jsonb,
            'delivered', 1, now(), now() - interval '30 hours', now() - interval '30 hours'
     FROM generate_series(1, 6) AS k
     UNION ALL
     SELECT 'stale_' || $1, 'ep_' || $1 || '_growth_failing', 'growth', 'message.status', 'stale', 2,
            '{}'::jsonb, 'pending', 5, now() + interval '1 hour', now() - interval '3 hours', NULL`,
    [prefix],
  );
  await pool.query(
    `INSERT INTO verifications (id, team, "to", status, code_salt, attempts, sends, last_sent_at, expires_at,
       created_at, updated_at, approved_at)
     SELECT 'ver_' || m.uuid, m.team, m."to", v.status, 'seed-salt', CASE WHEN v.status = 'max_attempts_reached' THEN 5 ELSE 1 END,
            1, m.created_at,
            CASE WHEN v.status = 'pending' THEN now() + interval '10 minutes' ELSE m.created_at + interval '10 minutes' END,
            m.created_at, m.created_at,
            CASE WHEN v.status = 'approved' THEN m.created_at + (20 + m.n % 90) * interval '1 second' END
     FROM (SELECT *, split_part(uuid, '-', 2)::int AS n FROM messages WHERE uuid LIKE $1 || '-%') m
     CROSS JOIN LATERAL (SELECT CASE
       WHEN m.status IN ('PENDING', 'SENT') THEN 'pending'
       WHEN m.status IN ('FAILED', 'EXPIRED') THEN 'expired'
       WHEN m.n % 35 = 0 THEN 'canceled'
       WHEN m.n % 15 = 0 THEN 'max_attempts_reached'
       WHEN m.status = 'READ' OR m.n % 2 = 0 THEN 'approved'
       ELSE 'expired' END AS status) v
     WHERE m.n % 5 = 0 OR m.n % 20 = 2`,
    [prefix],
  );
  await pool.query(
    `UPDATE messages SET verification_id = 'ver_' || uuid
     WHERE uuid LIKE $1 || '-%' AND (split_part(uuid, '-', 2)::int % 5 = 0 OR split_part(uuid, '-', 2)::int % 20 = 2)`,
    [prefix],
  );
}
