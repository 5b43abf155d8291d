import { mkdir } from "node:fs/promises";
import { PrismaPg } from "@prisma/adapter-pg";
import pg from "pg";
import { PrismaClient } from "../generated/prisma/client.ts";

export interface Database {
  /** "postgres" for a server at DATABASE_URL, "embedded" for PGlite in DATA_DIR. */
  kind: "postgres" | "embedded";
  /** Raw pool for the hot, hand-written SQL (the status state machine). */
  pool: pg.Pool;
  /** Prisma over the same pool for everything else. */
  prisma: PrismaClient;
  /** A URL a second connection (LISTEN, migrations CLI) can use; undefined when embedded. */
  url: string | undefined;
  close(): Promise<void>;
}

export interface DatabaseOptions {
  url: string | undefined;
  dataDir: string;
  poolSize: number;
}

export async function openDatabase(options: DatabaseOptions): Promise<Database> {
  if (options.url) {
    return wrap("postgres", makePool(options.url, options.poolSize), options.url, async () => {});
  }
  // Embedded: PGlite served over the Postgres wire protocol on loopback, so the very same pg/Prisma
  // code runs against it. It is one session, so the pool holds one connection. Loaded only when used: the
  // WebAssembly Postgres costs about 40 MB of memory just by being imported.
  const { PGlite, PGLiteSocketServer } = await loadEmbeddedPostgres();
  await mkdir(options.dataDir, { recursive: true });
  const db = await PGlite.create(options.dataDir);
  const server = new PGLiteSocketServer({ db, host: "127.0.0.1", port: 0, maxConnections: 1 });
  await server.start();
  const url = `postgresql://postgres@${server.getServerConn()}/postgres`;
  return wrap("embedded", makePool(url, 1), undefined, async () => {
    await server.stop();
    await db.close();
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

function makePool(connectionString: string, max: number): pg.Pool {
  const pool = new pg.Pool({ connectionString, max, connectionTimeoutMillis: 5_000, idleTimeoutMillis: 30_000 });
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

function wrap(kind: Database["kind"], pool: pg.Pool, url: string | undefined, stop: () => Promise<void>): Database {
  const prisma = new PrismaClient({ adapter: new PrismaPg(pool) });
  let closed: Promise<void> | undefined;
  return {
    kind,
    pool,
    prisma,
    url,
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
