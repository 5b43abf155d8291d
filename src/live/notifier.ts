import { EventEmitter } from "node:events";
import { setTimeout as sleep } from "node:timers/promises";
import pg from "pg";
import type { Logger } from "pino";
import type { Database } from "../db/database.ts";

export const CHANNEL = "message_changed";
/** Postgres refuses NOTIFY payloads of 8000 bytes or more. */
const MAX_PAYLOAD = 7900;
/** Emitted to every listener when the process stops: streams end, long-polls answer. */
const CLOSING = Symbol("closing");

export type ChangeListener = (signal: "changed" | "closing") => void;

/**
 * Tells in-process listeners that a message may have changed, whichever instance changed it.
 *
 * The code that changed messages calls `published(uuids)` once its transaction committed. On a Postgres
 * server that becomes a NOTIFY on `message_changed` (payload: comma-separated uuids), coalesced so that at
 * most one NOTIFY per process is in flight; one LISTEN connection per process receives them and fans them
 * out by uuid. Not a trigger on `messages`: NOTIFY holds a database-wide lock through commit, and measured
 * here a per-row trigger cut concurrent status updates from ~1700 to ~230 per second (docs/live.md).
 * On the embedded database there is no second connection to LISTEN on: `published` emits in-process only
 * (the embedded database serves one process anyway).
 */
export interface MessageNotifier {
  readonly mode: "listen" | "local";
  /** Calls `listener` when `uuid` may have changed; returns the function that stops it. */
  subscribe(uuid: string, listener: ChangeListener): () => void;
  /** Announces committed changes made by this process, to every instance. */
  published(uuids: Iterable<string>): void;
  listenerCount(uuid: string): number;
  /** Ends every subscription with "closing" (shutdown), then closes the LISTEN connection. */
  close(): Promise<void>;
}

export interface NotifierOptions {
  logger: Logger;
  /** Shown in pg_stat_activity for the LISTEN connection. */
  applicationName?: string;
  /** How long changes are gathered into one NOTIFY. */
  coalesceMs?: number;
  /** First and longest wait between LISTEN reconnection attempts. */
  reconnectMinMs?: number;
  reconnectMaxMs?: number;
}

function fanOut() {
  const emitter = new EventEmitter();
  // One listener per open stream or long-poll on a uuid: there is no sensible cap.
  emitter.setMaxListeners(0);
  return {
    emitter,
    subscribe(uuid: string, listener: ChangeListener) {
      const onChange = () => listener("changed");
      const onClosing = () => listener("closing");
      emitter.on(uuid, onChange);
      emitter.on(CLOSING, onClosing);
      return () => {
        emitter.off(uuid, onChange);
        emitter.off(CLOSING, onClosing);
      };
    },
    emit(uuid: string) {
      emitter.emit(uuid);
    },
    /** After a gap in LISTEN, any subscribed message may have changed unseen: tell them all to re-read. */
    emitAll() {
      for (const name of emitter.eventNames()) if (typeof name === "string") emitter.emit(name);
    },
    listenerCount: (uuid: string) => emitter.listenerCount(uuid),
  };
}

/** The in-process notifier of the embedded database (and of tests that build an app without one). */
export function createLocalNotifier(): MessageNotifier {
  const hub = fanOut();
  return {
    mode: "local",
    subscribe: hub.subscribe,
    published(uuids) {
      for (const uuid of new Set(uuids)) hub.emit(uuid);
    },
    listenerCount: hub.listenerCount,
    async close() {
      hub.emitter.emit(CLOSING);
    },
  };
}

/** The notifier for `db`: LISTEN on a dedicated connection when there is a server URL, local otherwise. */
export async function createMessageNotifier(db: Database, options: NotifierOptions): Promise<MessageNotifier> {
  if (!db.url) return createLocalNotifier();
  const url = db.url;
  const { logger } = options;
  const minMs = options.reconnectMinMs ?? 250;
  const maxMs = options.reconnectMaxMs ?? 30_000;
  const hub = fanOut();
  let client: pg.Client | undefined;
  let closed = false;
  let retry: NodeJS.Timeout | undefined;
  let failures = 0;

  async function connect(): Promise<void> {
    const next = new pg.Client({
      connectionString: url,
      application_name: options.applicationName ?? "whatsapp-otp-tracker:listen",
    });
    next.on("notification", (message) => {
      if (message.channel !== CHANNEL || !message.payload) return;
      for (const uuid of message.payload.split(",")) hub.emit(uuid);
    });
    next.on("error", (error) => {
      logger.warn({ err: error }, "live status: LISTEN connection failed");
      void next.end().catch(() => {});
    });
    next.on("end", () => {
      if (client !== next) return;
      client = undefined;
      if (!closed) scheduleReconnect();
    });
    try {
      await next.connect();
      await next.query(`LISTEN ${CHANNEL}`);
    } catch (error) {
      // Not adopted as `client`: end it here, or every failed attempt would leak a connection.
      await next.end().catch(() => {});
      throw error;
    }
    client = next;
    if (failures > 0) logger.info("live status: LISTEN connection restored");
    failures = 0;
  }

  function scheduleReconnect() {
    const delay = Math.min(maxMs, minMs * 2 ** failures);
    failures++;
    retry = setTimeout(() => {
      retry = undefined;
      connect()
        // Notifications sent while we were away are lost: every listener re-reads its message.
        .then(() => hub.emitAll())
        .catch((error) => {
          logger.warn({ err: error, attempt: failures }, "live status: LISTEN reconnect failed");
          if (!closed) scheduleReconnect();
        });
    }, delay);
    retry.unref();
  }

  try {
    await connect();
  } catch (error) {
    // The service can run without live updates for a while: keep trying in the background.
    logger.warn({ err: error }, "live status: cannot LISTEN yet, retrying");
    scheduleReconnect();
  }

  const coalesceMs = options.coalesceMs ?? 10;
  const pending = new Set<string>();
  let flushing: Promise<void> | undefined;

  /** Sends the gathered uuids in as few NOTIFYs as fit Postgres' 8000-byte payload limit. */
  async function flush() {
    await sleep(coalesceMs);
    while (pending.size > 0) {
      const batch: string[] = [];
      let size = 0;
      for (const uuid of pending) {
        if (size + uuid.length + 1 > MAX_PAYLOAD && batch.length > 0) break;
        batch.push(uuid);
        size += uuid.length + 1;
      }
      for (const uuid of batch) pending.delete(uuid);
      try {
        await db.pool.query("SELECT pg_notify($1, $2)", [CHANNEL, batch.join(",")]);
      } catch (error) {
        // Other instances miss this change (their long-polls still answer at the timeout); this one hears it.
        logger.warn({ err: error }, "live status: NOTIFY failed");
        for (const uuid of batch) hub.emit(uuid);
      }
    }
    flushing = undefined;
  }

  return {
    mode: "listen",
    subscribe: hub.subscribe,
    published(uuids) {
      if (closed) return;
      for (const uuid of uuids) if (!uuid.includes(",")) pending.add(uuid);
      if (pending.size > 0) flushing ??= flush();
    },
    listenerCount: hub.listenerCount,
    async close() {
      await flushing;
      closed = true;
      if (retry) clearTimeout(retry);
      hub.emitter.emit(CLOSING);
      await client?.end().catch(() => {});
      client = undefined;
    },
  };
}
