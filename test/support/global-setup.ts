import pg from "pg";
import type { TestProject } from "vitest/node";
import { applyMigrations } from "../../src/db/migrate.ts";

/**
 * Real PostgreSQL (default): one fresh database for this run, migrated once, dropped at the end.
 * TEST_DATABASE=embedded: nothing here; each test file starts its own PGlite (see `test-database.ts`).
 */
export default async function setup(project: TestProject) {
  if (process.env.TEST_DATABASE === "embedded") return;
  const adminUrl = process.env.TEST_ADMIN_DATABASE_URL ?? "postgresql://postgres@127.0.0.1:5432/postgres";
  const name = `otp_test_${process.pid}_${Date.now()}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  const pool = new pg.Pool({ connectionString: url.toString(), max: 1 });
  await applyMigrations(pool);
  await pool.end();
  project.provide("databaseUrl", url.toString());
  project.provide("adminDatabaseUrl", adminUrl);

  return async () => {
    if (process.env.KEEP_TEST_DATABASE) return;
    await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await admin.end();
  };
}

declare module "vitest" {
  export interface ProvidedContext {
    databaseUrl: string;
    adminDatabaseUrl: string;
  }
}
