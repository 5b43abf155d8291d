import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { inject } from "vitest";
import { type Database, openDatabase } from "../../src/db/database.ts";
import { applyMigrations } from "../../src/db/migrate.ts";

export const embedded = process.env.TEST_DATABASE === "embedded";

/** The run's migrated database on the real server; undefined on the embedded run. */
export const testDatabaseUrl = (): string | undefined => (embedded ? undefined : inject("databaseUrl"));

/**
 * A database for one test file, through the same `openDatabase` the service uses: the run's database on
 * the real PostgreSQL server, or a fresh embedded PGlite in a temporary folder.
 */
export async function openTestDatabase(poolSize = 5): Promise<Database> {
  if (!embedded) return openDatabase({ url: testDatabaseUrl(), dataDir: "", poolSize });
  const dataDir = await mkdtemp(path.join(tmpdir(), "otp-pglite-"));
  const db = await openDatabase({ url: undefined, dataDir, poolSize: 1 });
  await applyMigrations(db.pool);
  const close = db.close;
  return {
    ...db,
    close: async () => {
      await close();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}
