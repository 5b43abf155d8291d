import type pg from "pg";
import type { Logger } from "pino";
import { IDEMPOTENCY_TTL_MS } from "../messages/idempotency.ts";
import {
  advisoryUnlock,
  deleteBufferedEvents,
  deleteFinishedCallbackDeliveries,
  deleteOldIdempotencyKeys,
  deleteOldMessages,
  deleteStaleLimitRows,
  tryAdvisoryLock,
} from "./repository.ts";

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

/** Finished (delivered or failed) status callbacks are kept this long for the team to look at, then deleted. */
export const CALLBACK_DELIVERY_TTL_MS = 30 * 86_400_000;

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
    locked = await tryAdvisoryLock(client, RETENTION_LOCK);
    if (!locked) {
      options.logger.debug("retention: another instance is running it");
      return { ran: false, removed };
    }
    const untilDone = async (deleteBatch: () => Promise<number>) => {
      for (let count = batch; count >= batch; ) count = await deleteBatch();
    };
    await untilDone(async () => {
      const count = await deleteBufferedEvents(client, options.bufferedRetentionMs, batch);
      removed.bufferedEvents += count;
      return count;
    });
    const { messageRetentionMs } = options;
    if (messageRetentionMs !== undefined) {
      await untilDone(async () => {
        const { messages, events } = await deleteOldMessages(client, messageRetentionMs, batch);
        removed.messages += messages;
        removed.messageEvents += events;
        return messages;
      });
    }
    await untilDone(async () => {
      const count = await deleteOldIdempotencyKeys(client, IDEMPOTENCY_TTL_MS, batch);
      removed.idempotencyKeys += count;
      return count;
    });
    await untilDone(async () => {
      const count = await deleteFinishedCallbackDeliveries(client, CALLBACK_DELIVERY_TTL_MS, batch);
      removed.callbackDeliveries += count;
      return count;
    });
    await untilDone(async () => {
      const { batch: largest, total } = await deleteStaleLimitRows(client, batch);
      removed.limitRows += total;
      return largest;
    });
    const total = Object.values(removed).reduce((sum, count) => sum + count, 0);
    options.logger[total > 0 ? "info" : "debug"]({ removed }, "retention: removed old rows");
    return { ran: true, removed };
  } finally {
    let unlockError: Error | undefined;
    if (locked) {
      await advisoryUnlock(client, RETENTION_LOCK).catch((error: Error) => {
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
