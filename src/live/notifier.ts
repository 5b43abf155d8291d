import { EventEmitter } from "node:events";
import pg from "pg";
import type { Logger } from "pino";
import type { Database } from "../db/database.ts";

export const CHANNEL = "message_changed";
/** Emitted to every listener when the process stops: streams end, long-polls answer. */
const CLOSING = Symbol("closing");

export type ChangeListener = (signal: "changed" | "closing") => void;

/**
 * Tells in-process listeners that a message may have changed, whichever instance changed it.
 *
 * On a Postgres server, the `messages_notify_changed` trigger NOTIFYs `message_changed` with the uuid when a
 * status change commits; one LISTEN connection per process receives it and fans it out by uuid. On the
 * embedded database there is no second connection to LISTEN on, so the code that applied events calls
 * `published(uuids)` and only this process hears it (the embedded database serves one process anyway).
 */
export interface MessageNotifier {
  readonly mode: "listen" | "local";
  /** Calls `listener` when `uuid` may have changed; returns the function that stops it. */
  subscribe(uuid: string, listener: ChangeListener): () => void;
  /** Announces changes made by this process. A no-op where the database trigger already does it. */
  published(uuids: Iterable<string>): void;
  listenerCount(uuid: string): number;
  /** Ends every subscription with "closing" (shutdown), then closes the LISTEN connection. */
  close(): Promise<void>;
}

export interface NotifierOptions {
  logger: Logger;
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
    const next = new pg.Client({ connectionString: url });
    next.on("notification", (message) => {
      if (message.channel === CHANNEL && message.payload) hub.emit(message.payload);
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
    await next.connect();
    await next.query(`LISTEN ${CHANNEL}`);
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
  return {
    mode: "listen",
    subscribe: hub.subscribe,
    published() {},
    listenerCount: hub.listenerCount,
    async close() {
      closed = true;
      if (retry) clearTimeout(retry);
      hub.emitter.emit(CLOSING);
      await client?.end().catch(() => {});
      client = undefined;
    },
  };
}
