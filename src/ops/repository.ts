import type pg from "pg";

// The SQL of ops/: the messages-by-status count and retention's deletes. The ops page keeps its own reads in
// page/queries.ts.

/** Current rows per status (statuses with no row are absent). */
export async function countMessagesByStatus(pool: pg.Pool): Promise<Map<string, number>> {
  const { rows } = await pool.query<{ status: string; count: string }>(
    "SELECT status::text AS status, count(*) AS count FROM messages GROUP BY status",
  );
  return new Map(rows.map((row) => [row.status, Number(row.count)]));
}

/** Takes the session advisory lock `key` on this connection if no one holds it; false when another does. */
export async function tryAdvisoryLock(client: pg.PoolClient, key: number): Promise<boolean> {
  const { rows } = await client.query<{ locked: boolean }>("SELECT pg_try_advisory_lock($1) AS locked", [key]);
  return rows[0]?.locked === true;
}

export async function advisoryUnlock(client: pg.PoolClient, key: number): Promise<void> {
  await client.query("SELECT pg_advisory_unlock($1)", [key]);
}

// Each statement deletes at most $2 rows older than $1 milliseconds before the database's clock.
const cutoff = "now() - ($1::bigint * interval '1 millisecond')";

const DELETE_BUFFERED = `DELETE FROM message_events WHERE id IN (
  SELECT e.id FROM message_events e
  WHERE e.outcome = 'buffered' AND e.received_at < ${cutoff}
    AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.uuid = e.uuid)
  LIMIT $2)`;

/** Deletes up to `limit` buffered events (no message row) older than `olderThanMs`; returns how many. */
export async function deleteBufferedEvents(client: pg.PoolClient, olderThanMs: number, limit: number): Promise<number> {
  const { rowCount } = await client.query(DELETE_BUFFERED, [olderThanMs, limit]);
  return rowCount ?? 0;
}

const DELETE_MESSAGES = `WITH doomed AS (
  SELECT uuid FROM messages WHERE created_at < ${cutoff} ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED
), events AS (
  DELETE FROM message_events e USING doomed d WHERE e.uuid = d.uuid RETURNING 1
), gone AS (
  DELETE FROM messages m USING doomed d WHERE m.uuid = d.uuid RETURNING 1
)
SELECT (SELECT count(*) FROM gone)::int AS messages, (SELECT count(*) FROM events)::int AS events`;

/** Deletes up to `limit` messages created longer than `olderThanMs` ago, with their events. */
export async function deleteOldMessages(
  client: pg.PoolClient,
  olderThanMs: number,
  limit: number,
): Promise<{ messages: number; events: number }> {
  const { rows } = await client.query<{ messages: number; events: number }>(DELETE_MESSAGES, [olderThanMs, limit]);
  return { messages: rows[0]?.messages ?? 0, events: rows[0]?.events ?? 0 };
}

const DELETE_IDEMPOTENCY_KEYS = `DELETE FROM idempotency_keys WHERE (scope, key) IN (
  SELECT scope, key FROM idempotency_keys WHERE created_at < ${cutoff} LIMIT $2)`;

/** Deletes up to `limit` idempotency keys older than `olderThanMs`; returns how many. */
export async function deleteOldIdempotencyKeys(
  client: pg.PoolClient,
  olderThanMs: number,
  limit: number,
): Promise<number> {
  const { rowCount } = await client.query(DELETE_IDEMPOTENCY_KEYS, [olderThanMs, limit]);
  return rowCount ?? 0;
}

const DELETE_CALLBACK_DELIVERIES = `DELETE FROM callback_deliveries WHERE id IN (
  SELECT id FROM callback_deliveries WHERE created_at < ${cutoff} AND status <> 'pending' LIMIT $2)`;

/** Deletes up to `limit` finished (not pending) callback deliveries older than `olderThanMs`; returns how many. */
export async function deleteFinishedCallbackDeliveries(
  client: pg.PoolClient,
  olderThanMs: number,
  limit: number,
): Promise<number> {
  const { rowCount } = await client.query(DELETE_CALLBACK_DELIVERIES, [olderThanMs, limit]);
  return rowCount ?? 0;
}

// No recipient window is longer than 31 days (the configuration refuses more); a key's window is a minute.
const DELETE_LIMIT_ROWS = `WITH sends AS (
  DELETE FROM recipient_sends WHERE id IN (
    SELECT id FROM recipient_sends WHERE sent_at < now() - interval '31 days' LIMIT $1) RETURNING 1
), counters AS (
  DELETE FROM rate_limit_counters WHERE key IN (
    SELECT key FROM rate_limit_counters WHERE reset_at < now() - interval '1 hour' LIMIT $1) RETURNING 1
)
SELECT greatest((SELECT count(*) FROM sends), (SELECT count(*) FROM counters))::int AS batch,
  ((SELECT count(*) FROM sends) + (SELECT count(*) FROM counters))::int AS total`;

/**
 * Deletes up to `limit` ended recipient sends and up to `limit` ended rate-limit counters. `batch`: the larger
 * of the two counts (a full batch means more may be left); `total`: both together.
 */
export async function deleteStaleLimitRows(
  client: pg.PoolClient,
  limit: number,
): Promise<{ batch: number; total: number }> {
  const { rows } = await client.query<{ batch: number; total: number }>(DELETE_LIMIT_ROWS, [limit]);
  return { batch: rows[0]?.batch ?? 0, total: rows[0]?.total ?? 0 };
}
