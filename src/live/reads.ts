import pg from "pg";
import type { Database } from "../db/database.ts";
import { findMessage } from "../messages/repository.ts";
import type { MessageView } from "../messages/schemas.ts";

export interface LiveReads {
  read(uuid: string, team: string | null): Promise<MessageView | undefined>;
  /** How many reads can run at once (the pool's connections). */
  concurrency: number;
  close(): Promise<void>;
}

/** Connections of the live read pool: the hub reads each change once, so a few keep up with many watchers. */
export const LIVE_READ_POOL_SIZE = 2;

/**
 * Where streams and long-polls read messages: on a Postgres server, a small pool of their own, so that a burst
 * of re-reads (after a LISTEN reconnect, thousands of watchers at once) queues there and never takes the
 * connections webhooks and sends need. The embedded database is one session: it reads through the main pool.
 */
export function openLiveReads(db: Database, size = LIVE_READ_POOL_SIZE): LiveReads {
  if (!db.url) return { read: (uuid, team) => findMessage(db, uuid, team), concurrency: 1, close: async () => {} };
  const pool = new pg.Pool({
    connectionString: db.url,
    max: size,
    application_name: "whatsapp-otp-tracker:live",
    connectionTimeoutMillis: 5_000,
    idleTimeoutMillis: 30_000,
    // A read stuck on a dead connection or behind a lock would hold every watcher of that message: give up (the
    // watcher gets a 503) and read again later.
    query_timeout: db.queryTimeoutMs ?? 10_000,
    keepAlive: true,
  });
  // A server that goes away must not crash the process: the next read fails and is answered as a 503.
  pool.on("error", () => {});
  pool.on("connect", (client) => client.on("error", () => {}));
  let closed: Promise<void> | undefined;
  return {
    read: (uuid, team) => findMessage({ pool }, uuid, team),
    concurrency: size,
    close: () => {
      closed ??= pool.end();
      return closed;
    },
  };
}
