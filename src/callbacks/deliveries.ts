import type pg from "pg";

/** Waits after the 1st..7th failed attempt; the 8th failure makes the delivery `failed` (about 28 hours in all). */
export const RETRY_SCHEDULE_MS = [5_000, 300_000, 1_800_000, 7_200_000, 18_000_000, 36_000_000, 36_000_000];
export const MAX_ATTEMPTS = RETRY_SCHEDULE_MS.length + 1;
/** An endpoint that has failed everything for this long is disabled. */
export const DISABLE_AFTER_FAILING_MS = 5 * 86_400_000;

export const DELIVERY_STATUSES = ["pending", "delivered", "failed"] as const;
export type DeliveryStatus = (typeof DELIVERY_STATUSES)[number];

export interface ClaimedDelivery {
  id: string;
  eventId: string;
  endpointId: string;
  url: string;
  secretVersion: number;
  body: string;
  attempts: number;
}

/**
 * Claims due deliveries with a lease, at most `perEndpoint` of each enabled endpoint (so a dead endpoint
 * holds at most that many of the worker's slots) and never an event while an older event of the same subject
 * for that endpoint is still pending (events of one message arrive in order). Rows another instance is
 * claiming are skipped (SKIP LOCKED); a claim whose lease ran out is taken over.
 */
export async function claimDueDeliveries(
  pool: pg.Pool,
  options: { now: Date; leaseMs: number; perEndpoint: number; limit: number; busyEndpoints: string[] },
): Promise<ClaimedDelivery[]> {
  const { rows } = await pool.query<ClaimedDelivery>({
    name: "claim_callback_deliveries",
    text: `WITH due AS (
        SELECT d.id
          FROM callback_endpoints e
          CROSS JOIN LATERAL (
            SELECT c.id FROM callback_deliveries c
             WHERE c.endpoint_id = e.id AND c.status = 'pending' AND c.next_attempt_at <= $1
               AND (c.locked_until IS NULL OR c.locked_until < $1)
               AND NOT EXISTS (
                 SELECT 1 FROM callback_deliveries p
                  WHERE p.endpoint_id = c.endpoint_id AND p.subject = c.subject AND p.status = 'pending'
                    AND p.sequence < c.sequence)
             ORDER BY c.next_attempt_at, c.id
             LIMIT $3
             FOR UPDATE SKIP LOCKED) d
         WHERE e.enabled AND NOT (e.id = ANY ($5::text[]))
         LIMIT $4)
      UPDATE callback_deliveries c SET locked_until = $1::timestamptz + make_interval(secs => $2::float8 / 1000)
        FROM due, callback_endpoints e
       WHERE c.id = due.id AND e.id = c.endpoint_id
      RETURNING c.id::text, c.event_id AS "eventId", c.endpoint_id AS "endpointId", e.url,
                e.secret_version AS "secretVersion", c.payload::text AS body, c.attempts`,
    values: [options.now, options.leaseMs, options.perEndpoint, options.limit, options.busyEndpoints],
  });
  return rows;
}

export interface AttemptOutcome {
  ok: boolean;
  statusCode?: number;
  error?: string;
  response?: string;
  /** 410 Gone: the receiver asks never to be called again. */
  gone?: boolean;
}

/**
 * Records one attempt: delivered, or the next try on the schedule, or `failed` after the last one. The
 * endpoint remembers since when it fails; 410, or five days of failures, disable it.
 */
export async function recordAttempt(pool: pg.Pool, delivery: ClaimedDelivery, outcome: AttemptOutcome, now: Date) {
  const attempts = delivery.attempts + 1;
  const waitMs = RETRY_SCHEDULE_MS[attempts - 1];
  const status: DeliveryStatus = outcome.ok ? "delivered" : waitMs === undefined ? "failed" : "pending";
  const nextAttemptAt = new Date(now.getTime() + (waitMs ?? 0));
  await pool.query({
    name: "record_callback_attempt",
    text: `WITH delivery AS (
        UPDATE callback_deliveries
           SET status = $2, attempts = $3, locked_until = NULL, last_attempt_at = $4,
               next_attempt_at = CASE WHEN $2 = 'pending' THEN $5 ELSE next_attempt_at END,
               delivered_at = CASE WHEN $2 = 'delivered' THEN $4 ELSE delivered_at END,
               last_status_code = $6, last_error = COALESCE($7, last_error), last_response = $8
         WHERE id = $1::bigint
         RETURNING endpoint_id)
      UPDATE callback_endpoints e
         SET failing_since = CASE WHEN $2 = 'delivered' THEN NULL ELSE COALESCE(e.failing_since, $4) END,
             enabled = CASE
               WHEN $2 = 'delivered' THEN e.enabled
               WHEN $9 THEN false
               WHEN COALESCE(e.failing_since, $4) <= $4::timestamptz - make_interval(secs => $10::float8 / 1000) THEN false
               ELSE e.enabled END,
             disabled_reason = CASE
               WHEN $2 = 'delivered' THEN e.disabled_reason
               WHEN $9 THEN 'the receiver answered 410 Gone'
               WHEN COALESCE(e.failing_since, $4) <= $4::timestamptz - make_interval(secs => $10::float8 / 1000)
                 THEN 'every delivery failed for 5 days'
               ELSE e.disabled_reason END,
             updated_at = $4
        FROM delivery
       -- A success changes the endpoint only if it was failing: deliveries to one endpoint do not queue on its row.
       WHERE e.id = delivery.endpoint_id AND ($2 <> 'delivered' OR e.failing_since IS NOT NULL)`,
    values: [
      delivery.id,
      status,
      attempts,
      now,
      nextAttemptAt,
      outcome.statusCode ?? null,
      outcome.ok ? null : (outcome.error ?? "failed"),
      outcome.response ?? null,
      outcome.gone === true,
      DISABLE_AFTER_FAILING_MS,
    ],
  });
}

export interface DeliveryView {
  id: string;
  eventId: string;
  endpointId: string;
  type: string;
  subject: string;
  sequence: number;
  status: DeliveryStatus;
  attempts: number;
  nextAttemptAt: string | null;
  lastAttemptAt: string | null;
  lastStatusCode: number | null;
  lastError: string | null;
  lastResponse: string | null;
  createdAt: string;
  deliveredAt: string | null;
}

const DELIVERY_COLUMNS = `id::text, event_id AS "eventId", endpoint_id AS "endpointId", type, subject, sequence,
  status, attempts, CASE WHEN status = 'pending' THEN otp_iso(next_attempt_at) END AS "nextAttemptAt",
  otp_iso(last_attempt_at) AS "lastAttemptAt", last_status_code AS "lastStatusCode", last_error AS "lastError",
  last_response AS "lastResponse", otp_iso(created_at) AS "createdAt", otp_iso(delivered_at) AS "deliveredAt"`;

/** A team's deliveries, newest first, optionally of one status; `before` is the keyset cursor (an id). */
export async function listDeliveries(
  pool: pg.Pool,
  query: { team: string; status?: DeliveryStatus; before?: string; limit: number },
): Promise<DeliveryView[]> {
  const { rows } = await pool.query<DeliveryView>(
    `SELECT ${DELIVERY_COLUMNS} FROM callback_deliveries
      WHERE team = $1 AND ($2::text IS NULL OR status = $2) AND ($3::bigint IS NULL OR id < $3::bigint)
      ORDER BY id DESC LIMIT $4`,
    [query.team, query.status ?? null, query.before ?? null, query.limit],
  );
  return rows;
}

/**
 * Sends a team's delivery again as soon as possible, with a fresh retry schedule (same `webhook-id`).
 * Undefined when the team has no such delivery.
 */
export async function retryDelivery(pool: pg.Pool, team: string, id: string): Promise<DeliveryView | undefined> {
  const { rows } = await pool.query<DeliveryView>(
    `UPDATE callback_deliveries SET status = 'pending', attempts = 0, next_attempt_at = now(), locked_until = NULL
      WHERE team = $1 AND id = $2::bigint
      RETURNING ${DELIVERY_COLUMNS}`,
    [team, id],
  );
  return rows[0];
}

/** Queues again every delivery of a team created since `since` (replay after a receiver lost data). */
export async function replayDeliveries(pool: pg.Pool, team: string, since: Date): Promise<number> {
  const { rowCount } = await pool.query(
    `UPDATE callback_deliveries SET status = 'pending', attempts = 0, next_attempt_at = now(), locked_until = NULL
      WHERE team = $1 AND created_at >= $2`,
    [team, since],
  );
  return rowCount ?? 0;
}

/** Queue depth and the age of the oldest pending delivery, for metrics. */
export async function deliveryBacklog(pool: pg.Pool): Promise<{ pending: number; oldestPendingAgeSeconds: number }> {
  const { rows } = await pool.query<{ pending: string; age: number | null }>(
    `SELECT count(*) AS pending, extract(epoch FROM now() - min(created_at))::float8 AS age
       FROM callback_deliveries WHERE status = 'pending'`,
  );
  return { pending: Number(rows[0]?.pending ?? 0), oldestPendingAgeSeconds: rows[0]?.age ?? 0 };
}
