import { randomBytes } from "node:crypto";
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
 * The code that changed messages calls `published(uuids)` once its transaction committed. This process's own
 * listeners hear it at once (so they do not depend on the LISTEN connection); on a Postgres server it also
 * becomes a NOTIFY on `message_changed` (payload: `@<instance>,uuid1,uuid2,...`), coalesced so that at most one
 * NOTIFY per process is in flight. One LISTEN connection per process receives them, skips its own (by the
 * instance tag: already heard) and fans the others out by uuid. Not a trigger on `messages`: NOTIFY holds a
 * database-wide lock through commit, and measured here a per-row trigger cut concurrent status updates from
 * ~1700 to ~230 per second (docs/api.md, Live status).
 * On the embedded database there is no second connection to LISTEN on: `published` emits in-process only
 * (the embedded database serves one process anyway).
 */
export interface MessageNotifier {
  readonly mode: "listen" | "local";
  /** Calls `listener` when `uuid` may have changed; returns the function that stops it. */
  subscribe(uuid: string, listener: ChangeListener): () => void;
  /** Announces committed changes made by this process, to every instance. */
  published(uuids: Iterable<string>): void;
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
  /** How often the LISTEN connection is probed (`SELECT 1`), and how long a probe may take before it is cut. */
  probeMs?: number;
  probeTimeoutMs?: number;
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
  /** Marks this process's NOTIFYs, so that their echo is skipped (other instances skip `@` tokens too). */
  const tag = `@${randomBytes(6).toString("hex")}`;
  let client: pg.Client | undefined;
  let closed = false;
  let retry: NodeJS.Timeout | undefined;
  let failures = 0;

  async function connect(): Promise<void> {
    const next = new pg.Client({
      connectionString: url,
      application_name: options.applicationName ?? "whatsapp-otp-tracker:listen",
      // A NAT or proxy may drop an idle connection silently: keepalive notices a dead peer, the probe the rest.
      keepAlive: true,
      keepAliveInitialDelayMillis: 10_000,
      connectionTimeoutMillis: 10_000,
    });
    next.on("notification", (message) => {
      if (message.channel !== CHANNEL || !message.payload) return;
      const tokens = message.payload.split(",");
      if (tokens[0] === tag) return; // our own announcement: its listeners heard it when it was published
      for (const uuid of tokens) if (!uuid.startsWith("@")) hub.emit(uuid);
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

  /**
   * A silently dropped connection never errors: probe it, and cut it when the probe does not come back in time.
   * Its "end" then reconnects, and every watcher re-reads.
   */
  const probeTimeoutMs = options.probeTimeoutMs ?? 5_000;
  let probing = false;
  const probe = setInterval(() => {
    const current = client;
    if (!current || probing) return;
    probing = true;
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${probeTimeoutMs} ms`)), probeTimeoutMs);
    });
    Promise.race([current.query("SELECT 1"), timedOut])
      .catch((error: unknown) => {
        if (client !== current || closed) return;
        logger.warn({ err: error }, "live status: LISTEN connection probe failed, reconnecting");
        current.connection.stream.destroy();
      })
      .finally(() => {
        clearTimeout(timer);
        probing = false;
      });
  }, options.probeMs ?? 15_000);
  probe.unref();

  const coalesceMs = options.coalesceMs ?? 10;
  const pending = new Set<string>();
  let flushing: Promise<void> | undefined;

  /** Sends the gathered uuids in as few NOTIFYs as fit Postgres' 8000-byte payload limit. */
  async function flush() {
    await sleep(coalesceMs);
    while (pending.size > 0) {
      const batch: string[] = [];
      let size = tag.length + 1;
      for (const uuid of pending) {
        if (size + uuid.length + 1 > MAX_PAYLOAD && batch.length > 0) break;
        batch.push(uuid);
        size += uuid.length + 1;
      }
      for (const uuid of batch) pending.delete(uuid);
      try {
        await db.pool.query("SELECT pg_notify($1, $2)", [CHANNEL, [tag, ...batch].join(",")]);
      } catch (error) {
        // Other instances miss this change until their safety re-read; this one heard it already.
        logger.warn({ err: error }, "live status: NOTIFY failed");
      }
    }
    flushing = undefined;
  }

  return {
    mode: "listen",
    subscribe: hub.subscribe,
    published(uuids) {
      const distinct = new Set(uuids);
      for (const uuid of distinct) hub.emit(uuid);
      if (closed) return;
      for (const uuid of distinct) if (!uuid.includes(",") && !uuid.startsWith("@")) pending.add(uuid);
      if (pending.size > 0) flushing ??= flush();
    },
    async close() {
      await flushing;
      closed = true;
      clearInterval(probe);
      if (retry) clearTimeout(retry);
      hub.emitter.emit(CLOSING);
      await client?.end().catch(() => {});
      client = undefined;
    },
  };
}
