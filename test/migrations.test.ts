import { execFile } from "node:child_process";
import { readdir } from "node:fs/promises";
import { promisify } from "node:util";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { applyMigrations, MIGRATIONS_DIR } from "../src/db/migrate.ts";
import { embedded, testDatabaseUrl } from "./support/test-database.ts";

const run = promisify(execFile);

describe.skipIf(embedded)("migrations", () => {
  const name = `otp_migrate_${process.pid}_${Date.now()}`;
  let admin: pg.Client;
  let url: string;

  beforeAll(async () => {
    admin = new pg.Client({ connectionString: inject("adminDatabaseUrl") });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${name}`);
    const target = new URL(testDatabaseUrl() ?? "");
    target.pathname = `/${name}`;
    url = target.toString();
  });
  afterAll(async () => {
    await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await admin.end();
  });

  it("when two instances start at once on an empty database, then each migration is applied exactly once", async () => {
    const pools = [new pg.Pool({ connectionString: url, max: 1 }), new pg.Pool({ connectionString: url, max: 1 })];
    const results = await Promise.all(pools.map((pool) => applyMigrations(pool)));
    const expected = (await readdir(MIGRATIONS_DIR, { withFileTypes: true })).filter((e) => e.isDirectory()).length;

    expect(results.flat()).toHaveLength(expected);
    const rows = await pools[0]?.query("SELECT migration_name, count(*)::int AS n FROM _prisma_migrations GROUP BY 1");
    expect(rows?.rows).toHaveLength(expected);
    expect(rows?.rows.every((row) => row.n === 1)).toBe(true);
    await Promise.all(pools.map((pool) => pool.end()));
  });

  it("then Prisma Migrate itself reports the database up to date (same bookkeeping, offline CLI)", async () => {
    const { stdout } = await run("npx", ["prisma", "migrate", "status"], {
      env: { ...process.env, DATABASE_URL: url, CHECKPOINT_DISABLE: "1" },
    });
    expect(stdout).toContain("Database schema is up to date");
  });
});
