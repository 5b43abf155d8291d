import type pg from "pg";
import { ulid } from "ulid";

/** The values of callback_deliveries.status. */
export const DELIVERY_STATUSES = ["pending", "delivered", "failed"] as const;
export type DeliveryStatus = (typeof DELIVERY_STATUSES)[number];

/** The events an endpoint can subscribe to (callback_endpoints.events). */
export const CALLBACK_EVENT_TYPES = ["message.status", "verification.status"] as const;
export type CallbackEventType = (typeof CALLBACK_EVENT_TYPES)[number];

export interface CallbackEndpoint {
  id: string;
  team: string;
  url: string;
  events: CallbackEventType[];
  enabled: boolean;
  disabledReason: string | null;
  secretVersion: number;
  failingSince: Date | null;
  createdAt: Date;
}

const ENDPOINT_COLUMNS = `id, team, url, events, enabled, disabled_reason AS "disabledReason",
  secret_version AS "secretVersion", failing_since AS "failingSince", created_at AS "createdAt"`;

export async function addEndpoint(
  pool: pg.Pool,
  endpoint: { team: string; url: string; events: readonly CallbackEventType[] },
): Promise<CallbackEndpoint> {
  const { rows } = await pool.query<CallbackEndpoint>(
    `INSERT INTO callback_endpoints (id, team, url, events) VALUES ($1, $2, $3, $4) RETURNING ${ENDPOINT_COLUMNS}`,
    [`ep_${ulid()}`, endpoint.team, endpoint.url, endpoint.events],
  );
  return rows[0] as CallbackEndpoint;
}

export async function listEndpoints(pool: pg.Pool, team?: string): Promise<CallbackEndpoint[]> {
  const { rows } = await pool.query<CallbackEndpoint>(
    `SELECT ${ENDPOINT_COLUMNS} FROM callback_endpoints WHERE $1::text IS NULL OR team = $1 ORDER BY team, created_at`,
    [team ?? null],
  );
  return rows;
}

/** Enabling clears the failure history: the endpoint gets five fresh days. */
export async function setEndpointEnabled(pool: pg.Pool, id: string, enabled: boolean): Promise<boolean> {
  const { rowCount } = await pool.query(
    `UPDATE callback_endpoints
        SET enabled = $2, disabled_reason = CASE WHEN $2 THEN NULL ELSE 'disabled by an operator' END,
            failing_since = NULL, updated_at = now()
      WHERE id = $1`,
    [id, enabled],
  );
  return rowCount === 1;
}

/** Removes the endpoint and its deliveries. */
export async function removeEndpoint(pool: pg.Pool, id: string): Promise<boolean> {
  const { rowCount } = await pool.query("DELETE FROM callback_endpoints WHERE id = $1", [id]);
  return rowCount === 1;
}

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
 * The claim: due deliveries with a lease, at most `$3` per enabled endpoint not in `$5` (so a dead endpoint holds
 * at most that many of the worker's slots), `$4` in all, and never an event while an older event of the same
 * subject for that endpoint is still pending (events of one message arrive in order). Rows another instance is
 * claiming are skipped (SKIP LOCKED); a claim whose lease ran out is taken over. Written so that the plan reads
 * about what it claims whatever the planner knows of the queue (a backlog fills it faster than it is analyzed):
 * the order check is a subquery on the subject's first pending sequence, always answered from the subject index
 * (as a NOT EXISTS join it read the endpoint's whole queue for each candidate), and the claimed rows are updated
 * by primary key (a join with the CTE was hashed against a scan of the queue). Either drained a backlog at a few
 * dozen a second.
 */
export const CLAIM_DUE_DELIVERIES = `WITH due AS (
    SELECT d.id
      FROM callback_endpoints e
      CROSS JOIN LATERAL (
        SELECT c.id FROM callback_deliveries c
         WHERE c.endpoint_id = e.id AND c.status = 'pending' AND c.next_attempt_at <= $1
           AND (c.locked_until IS NULL OR c.locked_until < $1)
           AND c.sequence = (
             SELECT min(p.sequence) FROM callback_deliveries p
              WHERE p.endpoint_id = c.endpoint_id AND p.subject = c.subject AND p.status = 'pending')
         ORDER BY c.next_attempt_at, c.id
         LIMIT $3
         FOR UPDATE SKIP LOCKED) d
     WHERE e.enabled AND NOT (e.id = ANY ($5::text[]))
     LIMIT $4)
  UPDATE callback_deliveries c SET locked_until = $1::timestamptz + make_interval(secs => $2::float8 / 1000)
    FROM callback_endpoints e
   WHERE c.id = ANY (ARRAY(SELECT id FROM due)) AND e.id = c.endpoint_id
  RETURNING c.id::text, c.event_id AS "eventId", c.endpoint_id AS "endpointId", e.url,
            e.secret_version AS "secretVersion", c.payload::text AS body, c.attempts`;

/** Runs the claim (`CLAIM_DUE_DELIVERIES`) for the worker. */
export async function claimDueDeliveries(
  pool: pg.Pool,
  options: { now: Date; leaseMs: number; perEndpoint: number; limit: number; busyEndpoints: string[] },
): Promise<ClaimedDelivery[]> {
  const { rows } = await pool.query<ClaimedDelivery>({
    name: "claim_callback_deliveries",
    text: CLAIM_DUE_DELIVERIES,
    values: [options.now, options.leaseMs, options.perEndpoint, options.limit, options.busyEndpoints],
  });
  return rows;
}

/**
 * Stores one attempt's result on the delivery. The endpoint remembers since when it fails; 410 (`gone`), or
 * failing for `disableAfterFailingMs`, disables it.
 */
export async function saveAttempt(
  pool: pg.Pool,
  attempt: {
    deliveryId: string;
    status: DeliveryStatus;
    attempts: number;
    at: Date;
    /** Used only while `pending`. */
    nextAttemptAt: Date;
    statusCode: number | null;
    /** Null keeps the last error (a success does not erase why earlier attempts failed). */
    error: string | null;
    response: string | null;
    gone: boolean;
    disableAfterFailingMs: number;
  },
) {
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
      attempt.deliveryId,
      attempt.status,
      attempt.attempts,
      attempt.at,
      attempt.nextAttemptAt,
      attempt.statusCode,
      attempt.error,
      attempt.response,
      attempt.gone,
      attempt.disableAfterFailingMs,
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
