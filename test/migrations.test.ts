import { execFile } from "node:child_process";
import { cp, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { applyMigrations, MIGRATIONS_DIR, NO_TRANSACTION_MARKER } from "../src/db/migrate.ts";
import { createEmptyDatabase } from "./support/scratch-database.ts";
import { embedded } from "./support/test-database.ts";

const run = promisify(execFile);
const ROOT = path.resolve(import.meta.dirname, "..");

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

  it("when npm run migrate runs in production without Betatel credentials, then it says the database is up to date", async () => {
    // A deploy step has the database, not necessarily the service's provider credentials and secrets.
    const { stdout, stderr } = await run(process.execPath, ["--import", "tsx", "src/db/migrate-cli.ts"], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? "", NODE_ENV: "production", DATABASE_URL: url },
    });
    expect({ stdout, stderr }).toEqual({ stdout: "database is up to date\n", stderr: "" });
  });

  it("then Prisma Migrate itself reports the database up to date (same bookkeeping, offline CLI)", async () => {
    const { stdout } = await run("npx", ["prisma", "migrate", "status"], {
      env: { ...process.env, DATABASE_URL: url, CHECKPOINT_DISABLE: "1" },
    });
    expect(stdout).toContain("Database schema is up to date");
  });
});

/** A copy of the project's migrations in a temp directory, plus `extra` migrations (name -> SQL). */
async function migrationsWith(extra: Record<string, string>): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), "otp-migrations-"));
  await cp(MIGRATIONS_DIR, dir, { recursive: true });
  for (const [name, sql] of Object.entries(extra)) {
    await mkdir(path.join(dir, name));
    await writeFile(path.join(dir, name, "migration.sql"), sql);
  }
  return dir;
}

describe.skipIf(embedded)("migration files", () => {
  let database: Awaited<ReturnType<typeof createEmptyDatabase>>;
  let pool: pg.Pool;
  const dirs: string[] = [];
  const aCopy = async (extra: Record<string, string> = {}) => {
    const dir = await migrationsWith(extra);
    dirs.push(dir);
    return dir;
  };

  beforeAll(async () => {
    database = await createEmptyDatabase("migrate_files");
    pool = new pg.Pool({ connectionString: database.url.toString(), max: 1 });
  });
  afterAll(async () => {
    await pool.end();
    await database.drop();
    await Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true })));
  });

  const concurrentIndex = "CREATE INDEX CONCURRENTLY messages_wam_id_idx ON messages (wam_id);\n";

  it("when a migration needs to run outside a transaction and is not marked, then it fails and is not recorded", async () => {
    const dir = await aCopy({ "20990101000000_concurrent_index": concurrentIndex });

    await expect(applyMigrations(pool, dir)).rejects.toThrow(
      /20990101000000_concurrent_index failed: CREATE INDEX CONCURRENTLY cannot run inside a transaction block/,
    );
    const rows = await pool.query("SELECT 1 FROM _prisma_migrations WHERE migration_name = $1", [
      "20990101000000_concurrent_index",
    ]);
    expect(rows.rowCount).toBe(0);
  });

  it("when it starts with the no-transaction marker, then CREATE INDEX CONCURRENTLY is applied and recorded", async () => {
    const dir = await aCopy({ "20990101000000_concurrent_index": `${NO_TRANSACTION_MARKER}\n${concurrentIndex}` });

    expect(await applyMigrations(pool, dir)).toEqual(["20990101000000_concurrent_index"]);
    const index = await pool.query(
      "SELECT indisvalid FROM pg_index WHERE indexrelid = 'messages_wam_id_idx'::regclass",
    );
    expect(index.rows).toEqual([{ indisvalid: true }]);
    expect(await applyMigrations(pool, dir)).toEqual([]);
  });

  it("when an applied migration's file was changed, then applying stops with a message naming it", async () => {
    const dir = await aCopy();
    await applyMigrations(pool, dir);
    const file = path.join(dir, "20261127000000_init", "migration.sql");
    await writeFile(file, `${await readFile(file, "utf8")}\n-- an edit after the fact\n`);

    await expect(applyMigrations(pool, dir)).rejects.toThrow(
      "migration 20261127000000_init was changed after it was applied (its checksum differs from _prisma_migrations)",
    );
  });

  it("when an applied migration's file only gained Windows line endings, then it is still the same migration", async () => {
    const dir = await aCopy();
    await applyMigrations(pool, dir);
    const file = path.join(dir, "20261127000000_init", "migration.sql");
    await writeFile(file, (await readFile(file, "utf8")).replace(/\n/g, "\r\n"));

    expect(await applyMigrations(pool, dir)).toEqual([]);
  });
});
