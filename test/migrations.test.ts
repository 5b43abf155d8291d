import { execFile } from "node:child_process";
import { readdir } from "node:fs/promises";
import { promisify } from "node:util";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { applyMigrations, MIGRATIONS_DIR } from "../src/db/migrate.ts";
import { createEmptyDatabase } from "./support/scratch-database.ts";
import { embedded } from "./support/test-database.ts";

const run = promisify(execFile);

describe.skipIf(embedded)("migrations", () => {
  let database: Awaited<ReturnType<typeof createEmptyDatabase>>;
  let url: string;

  beforeAll(async () => {
    database = await createEmptyDatabase("migrate");
    url = database.url.toString();
  });
  afterAll(() => database.drop());

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
