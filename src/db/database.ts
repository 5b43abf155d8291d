import { mkdir } from "node:fs/promises";
import { PrismaPg } from "@prisma/adapter-pg";
import pg from "pg";
import { PrismaClient } from "../generated/prisma/client.ts";
import { lockEmbeddedDataDir } from "./embedded-lock.ts";

export interface Database {
  /** "postgres" for a server at DATABASE_URL, "embedded" for PGlite in DATA_DIR. */
  kind: "postgres" | "embedded";
  /** Raw pool for the hot, hand-written SQL (the status state machine). */
  pool: pg.Pool;
  /** Prisma over the same pool for everything else. */
  prisma: PrismaClient;
  /**
   * Where /readyz runs its probe: one connection of its own on a Postgres server, so a busy pool cannot make
   * the probe wait and the probe never takes a connection that requests need. The embedded database is a
   * single session, so there it is `pool` itself.
   */
  readinessPool: pg.Pool;
  /** A URL a second connection (LISTEN, migrations CLI) can use; undefined when embedded. */
  url: string | undefined;
  /** The pool's query timeout (`DatabaseOptions.queryTimeoutMs`), for pools of its own a feature opens. */
  queryTimeoutMs: number | undefined;
  close(): Promise<void>;
}

/** The longest /readyz waits for a connection, and then for its probe, on its own connection. */
export const READINESS_TIMEOUT_MS = 2_000;

export interface DatabaseOptions {
  url: string | undefined;
  dataDir: string;
  poolSize: number;
  /**
   * How long an unused pool connection is kept before it is closed. Default: 30 s on a Postgres server; never
   * on the embedded database, where a connection is a loopback socket to this very process.
   */
  idleTimeoutMs?: number;
  /**
   * Postgres server only: the longest one query on the pool may run before it fails ("Query read timeout", a
   * 503) and its connection is dropped. Without it a table locked by another session, or a network that went
   * silent, holds requests and background tasks for as long as that lasts. Unset: no limit.
   */
  queryTimeoutMs?: number;
}

export async function openDatabase(options: DatabaseOptions): Promise<Database> {
  if (options.url) {
    const pool = makePool({
      connectionString: options.url,
      max: options.poolSize,
      idleTimeoutMillis: options.idleTimeoutMs ?? 30_000,
      // Client-side, like the probe's below, so that it works through any pooler.
      query_timeout: options.queryTimeoutMs,
    });
    const readinessPool = makePool({
      connectionString: options.url,
      max: 1,
      application_name: "whatsapp-otp-tracker:readiness",
      connectionTimeoutMillis: READINESS_TIMEOUT_MS,
      // A probe stuck past its deadline ends its connection (pool.query drops a client whose query failed),
      // on a silent network too. Client-side on purpose: a `statement_timeout` startup parameter is refused
      // by some poolers (PgBouncer).
      query_timeout: READINESS_TIMEOUT_MS,
      idleTimeoutMillis: options.idleTimeoutMs ?? 30_000,
      allowExitOnIdle: true,
    });
    return wrap({
      kind: "postgres",
      pool,
      readinessPool,
      url: options.url,
      queryTimeoutMs: options.queryTimeoutMs,
      stop: () => readinessPool.end(),
    });
  }
  // Embedded: PGlite served over the Postgres wire protocol on loopback, so the very same pg/Prisma
  // code runs against it. It is one session, so the pool holds one connection. Loaded only when used: the
  // WebAssembly Postgres costs about 40 MB of memory just by being imported.
  const { PGlite, PGLiteSocketServer } = await loadEmbeddedPostgres();
  await mkdir(options.dataDir, { recursive: true });
  const unlock = await lockEmbeddedDataDir(options.dataDir);
  let db: InstanceType<typeof PGlite>;
  let server: InstanceType<typeof PGLiteSocketServer>;
  try {
    db = await PGlite.create(options.dataDir);
    // Two sockets, though the pool holds one connection: a replaced connection may still be closing when its
    // successor connects, and the socket server would turn the successor away. Queries are serialised anyway.
    server = new PGLiteSocketServer({ db, host: "127.0.0.1", port: 0, maxConnections: 2 });
    await server.start();
  } catch (error) {
    await unlock();
    throw error;
  }
  const url = `postgresql://postgres@${server.getServerConn()}/postgres`;
  const pool = makePool({
    connectionString: url,
    max: 1,
    idleTimeoutMillis: options.idleTimeoutMs ?? 0,
    // Every connection shares PGlite's one session, so whatever an earlier connection left behind (named
    // prepared statements above all: "prepared statement ... already exists" on the next Parse) is still
    // there. A new connection starts by resetting the session, as a fresh Postgres backend would be.
    onConnect: (client) => client.query("DISCARD ALL"),
  });
  return wrap({
    kind: "embedded",
    pool,
    readinessPool: pool,
    url: undefined,
    queryTimeoutMs: undefined,
    async stop() {
      await server.stop();
      await db.close();
      await unlock();
    },
  });
}

/** PGlite is a development dependency: a production install (`npm prune --omit=dev`) does not have it. */
async function loadEmbeddedPostgres() {
  try {
    const { PGlite } = await import("@electric-sql/pglite");
    const { PGLiteSocketServer } = await import("@electric-sql/pglite-socket");
    return { PGlite, PGLiteSocketServer };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ERR_MODULE_NOT_FOUND") throw error;
    throw new Error(
      "DATABASE_URL is unset and the embedded database (@electric-sql/pglite, a development dependency) is not installed: set DATABASE_URL, or install with dev dependencies (npm ci)",
    );
  }
}

/** Longest wait for a pooled connection; deadlines that include database work are derived from it. */
export const POOL_CONNECTION_TIMEOUT_MS = 5_000;

function makePool(config: pg.PoolConfig): pg.Pool {
  // TCP keepalive: a connection whose peer vanished without a word (a dropped network) is noticed and closed.
  const pool = new pg.Pool({ connectionTimeoutMillis: POOL_CONNECTION_TIMEOUT_MS, keepAlive: true, ...config });
  // An idle client whose server went away emits here; without a listener it would crash the process.
  pool.on("error", () => {});
  // A checked-out client (inside a transaction, between two queries) emits "error" on itself when the server
  // ends the session (restart, pg_terminate_backend, network cut). Without a listener that crashes the process;
  // with one, the client's next query fails ("not queryable": a 503) and the pool discards it on release.
  pool.on("connect", (client) => {
    client.on("error", () => {});
  });
  return pool;
}

function wrap(parts: Omit<Database, "prisma" | "close"> & { stop: () => Promise<void> }): Database {
  const { stop, ...database } = parts;
  const { pool } = database;
  const prisma = new PrismaClient({ adapter: new PrismaPg(pool) });
  let closed: Promise<void> | undefined;
  return {
    ...database,
    prisma,
    close() {
      closed ??= (async () => {
        await prisma.$disconnect();
        await pool.end();
        await stop();
      })();
      return closed;
    },
  };
}

/**
 * Whether the database takes writes now. False on a read-only database: a standby that the URL reaches
 * after a failover, or one set `default_transaction_read_only`, where reads work but every write fails.
 */
export async function acceptsWrites(pool: pg.Pool): Promise<boolean> {
  const { rows } = await pool.query<{ readOnly: string }>({
    name: "accepts_writes",
    text: "SELECT current_setting('transaction_read_only') AS \"readOnly\"",
  });
  return rows[0]?.readOnly !== "on";
}
