import type pg from "pg";
import type { Logger } from "pino";
import { IDEMPOTENCY_TTL_MS } from "../messages/idempotency.ts";

export interface RetentionOptions {
  pool: pg.Pool;
  logger: Logger;
  /** Buffered events (statuses for uuids never created) older than this are deleted. */
  bufferedRetentionMs: number;
  /** Messages (and their events) created longer ago than this are deleted; undefined keeps them forever. */
  messageRetentionMs: number | undefined;
  /** Rows per DELETE statement: short statements, short row locks, no long transaction. */
  batchSize?: number;
}

export interface RetentionRun {
  /** False when another instance held the retention lock, so this one did nothing. */
  ran: boolean;
  removed: {
    bufferedEvents: number;
    messages: number;
    messageEvents: number;
    idempotencyKeys: number;
    callbackDeliveries: number;
    /** Abuse-limit bookkeeping: recipient sends past any window, per-key counters of ended windows. */
    limitRows: number;
  };
}

/** Advisory lock key of the retention job (any constant distinct from the migration lock). */
export const RETENTION_LOCK = 0x0e7e_7101;
const DEFAULT_BATCH = 1000;

// Each statement deletes at most $2 rows older than $1 milliseconds before the database's clock.
const cutoff = "now() - ($1::bigint * interval '1 millisecond')";

const DELETE_BUFFERED = `DELETE FROM message_events WHERE id IN (
  SELECT e.id FROM message_events e
  WHERE e.outcome = 'buffered' AND e.received_at < ${cutoff}
    AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.uuid = e.uuid)
  LIMIT $2)`;

const DELETE_MESSAGES = `WITH doomed AS (
  SELECT uuid FROM messages WHERE created_at < ${cutoff} ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED
), events AS (
  DELETE FROM message_events e USING doomed d WHERE e.uuid = d.uuid RETURNING 1
), gone AS (
  DELETE FROM messages m USING doomed d WHERE m.uuid = d.uuid RETURNING 1
)
SELECT (SELECT count(*) FROM gone)::int AS messages, (SELECT count(*) FROM events)::int AS events`;

const DELETE_IDEMPOTENCY_KEYS = `DELETE FROM idempotency_keys WHERE (scope, key) IN (
  SELECT scope, key FROM idempotency_keys WHERE created_at < ${cutoff} LIMIT $2)`;

/** Finished (delivered or failed) status callbacks are kept this long for the team to look at, then deleted. */
export const CALLBACK_DELIVERY_TTL_MS = 30 * 86_400_000;

const DELETE_CALLBACK_DELIVERIES = `DELETE FROM callback_deliveries WHERE id IN (
  SELECT id FROM callback_deliveries WHERE created_at < ${cutoff} AND status <> 'pending' LIMIT $2)`;

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
 * One retention pass, if no other instance is running one: takes a session advisory lock on one dedicated
 * connection (and does all its work on that connection, so an embedded one-connection pool never waits on
 * itself), deletes in batches until nothing old is left, logs the counts.
 */
export async function runRetentionOnce(options: RetentionOptions): Promise<RetentionRun> {
  const batch = options.batchSize ?? DEFAULT_BATCH;
  const removed = {
    bufferedEvents: 0,
    messages: 0,
    messageEvents: 0,
    idempotencyKeys: 0,
    callbackDeliveries: 0,
    limitRows: 0,
  };
  const client = await options.pool.connect();
  let locked = false;
  try {
    const { rows } = await client.query<{ locked: boolean }>("SELECT pg_try_advisory_lock($1) AS locked", [
      RETENTION_LOCK,
    ]);
    locked = rows[0]?.locked === true;
    if (!locked) {
      options.logger.debug("retention: another instance is running it");
      return { ran: false, removed };
    }
    const untilDone = async (deleteBatch: () => Promise<number>) => {
      for (let count = batch; count >= batch; ) count = await deleteBatch();
    };
    await untilDone(async () => {
      const { rowCount } = await client.query(DELETE_BUFFERED, [options.bufferedRetentionMs, batch]);
      removed.bufferedEvents += rowCount ?? 0;
      return rowCount ?? 0;
    });
    const { messageRetentionMs } = options;
    if (messageRetentionMs !== undefined) {
      await untilDone(async () => {
        const { rows } = await client.query<{ messages: number; events: number }>(DELETE_MESSAGES, [
          messageRetentionMs,
          batch,
        ]);
        removed.messages += rows[0]?.messages ?? 0;
        removed.messageEvents += rows[0]?.events ?? 0;
        return rows[0]?.messages ?? 0;
      });
    }
    await untilDone(async () => {
      const { rowCount } = await client.query(DELETE_IDEMPOTENCY_KEYS, [IDEMPOTENCY_TTL_MS, batch]);
      removed.idempotencyKeys += rowCount ?? 0;
      return rowCount ?? 0;
    });
    await untilDone(async () => {
      const { rowCount } = await client.query(DELETE_CALLBACK_DELIVERIES, [CALLBACK_DELIVERY_TTL_MS, batch]);
      removed.callbackDeliveries += rowCount ?? 0;
      return rowCount ?? 0;
    });
    await untilDone(async () => {
      const { rows } = await client.query<{ batch: number; total: number }>(DELETE_LIMIT_ROWS, [batch]);
      removed.limitRows += rows[0]?.total ?? 0;
      return rows[0]?.batch ?? 0;
    });
    const total = Object.values(removed).reduce((sum, count) => sum + count, 0);
    options.logger[total > 0 ? "info" : "debug"]({ removed }, "retention: removed old rows");
    return { ran: true, removed };
  } finally {
    let unlockError: Error | undefined;
    if (locked) {
      await client.query("SELECT pg_advisory_unlock($1)", [RETENTION_LOCK]).catch((error: Error) => {
        unlockError = error;
      });
    }
    // A connection that may still hold the lock is closed rather than reused (closing frees the lock).
    client.release(unlockError);
  }
}

export interface StartRetentionOptions extends RetentionOptions {
  /** Time between passes; 0 turns the job off. */
  intervalMs: number;
}

/**
 * Runs a retention pass now and then every `intervalMs` (never two at once in this process). Returns a stop
 * function that cancels the next pass and waits for a running one to finish.
 */
export function startRetention(options: StartRetentionOptions): () => Promise<void> {
  if (options.intervalMs <= 0) return async () => {};
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;

  const pass = () => {
    running = runRetentionOnce(options)
      .then(() => undefined)
      .catch((error: unknown) => options.logger.error({ err: error }, "retention: pass failed; will retry"))
      .finally(() => {
        running = undefined;
        if (!stopped) timer = setTimeout(pass, options.intervalMs).unref();
      });
  };
  pass();

  return async () => {
    stopped = true;
    clearTimeout(timer);
    await running;
  };
}
