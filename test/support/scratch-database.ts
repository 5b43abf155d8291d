import { randomBytes } from "node:crypto";
import pg from "pg";
import { inject } from "vitest";
import { type Database, openDatabase } from "../../src/db/database.ts";
import { applyMigrations } from "../../src/db/migrate.ts";

/** application_name of the test's own connections. */
export const TEST_OWNER = "test-owner";

export interface ScratchDatabase {
  name: string;
  /** URL of a fresh, migrated database owned by one test file. */
  url: string;
  /** Rows in each of the service's tables (the database is this file's alone, so totals are meaningful). */
  counts(): Promise<{ messages: number; events: number; idempotencyKeys: number }>;
  /** A direct connection for assertions, not through the service. */
  query<Row extends pg.QueryResultRow>(text: string, values?: unknown[]): Promise<Row[]>;
  drop(): Promise<void>;
}

/** A new, empty database on the real server (no migrations applied), and how to drop it. */
export async function createEmptyDatabase(label: string): Promise<{ name: string; url: URL; drop(): Promise<void> }> {
  const adminUrl = inject("adminDatabaseUrl");
  const name = `otp_${label}_${process.pid}_${Date.now()}_${randomBytes(3).toString("hex")}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return {
    name,
    url,
    async drop() {
      await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await admin.end();
    },
  };
}

/** A fresh migrated database on the real server, dropped by `drop()`. */
export async function createScratchDatabase(label: string): Promise<ScratchDatabase> {
  const { name, url, drop } = await createEmptyDatabase(label);
  // Named, so fault tests can terminate the app's connections and not this one.
  const pool = new pg.Pool({ connectionString: url.toString(), max: 2, application_name: TEST_OWNER });
  // DROP ... WITH (FORCE) and the fault tests end sessions; a test helper must not crash on that.
  pool.on("error", () => {});
  pool.on("connect", (client) => client.on("error", () => {}));
  await applyMigrations(pool);
  const query = async <Row extends pg.QueryResultRow>(text: string, values: unknown[] = []) =>
    (await pool.query<Row>(text, values)).rows;
  return {
    name,
    url: url.toString(),
    query,
    async counts() {
      const [row] = await query<{ messages: number; events: number; keys: number }>(
        `SELECT (SELECT count(*)::int FROM messages) AS messages, (SELECT count(*)::int FROM message_events) AS events,
                (SELECT count(*)::int FROM idempotency_keys) AS keys`,
      );
      return { messages: row?.messages ?? -1, events: row?.events ?? -1, idempotencyKeys: row?.keys ?? -1 };
    },
    async drop() {
      await pool.end();
      await drop();
    },
  };
}

/** The service's own database handle over `url` (for apps under test that must not use the run's database). */
export const openDatabaseAt = (url: string, poolSize = 5): Promise<Database> =>
  openDatabase({ url, dataDir: "", poolSize });
