import { randomBytes } from "node:crypto";
import pg from "pg";
import { inject } from "vitest";
import { type Database, openDatabase } from "../../src/db/database.ts";
import { applyMigrations } from "../../src/db/migrate.ts";
import { embedded, openTestDatabase } from "./test-database.ts";

/**
 * A database of its own for tests that must see whole-table numbers (views, gauges, retention): a new,
 * migrated database on the real server, dropped on close; on the embedded run, a fresh PGlite anyway.
 */
export async function openIsolatedDatabase(poolSize = 5): Promise<Database> {
  if (embedded) return openTestDatabase(1);
  const adminUrl = inject("adminDatabaseUrl");
  const name = `otp_iso_${process.pid}_${randomBytes(4).toString("hex")}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  const db = await openDatabase({ url: url.toString(), dataDir: "", poolSize });
  await applyMigrations(db.pool);
  const close = db.close;
  return {
    ...db,
    async close() {
      await close();
      await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await admin.end();
    },
  };
}
