import { type Database, openDatabase } from "../../src/db/database.ts";
import { applyMigrations } from "../../src/db/migrate.ts";
import { createEmptyDatabase } from "./scratch-database.ts";
import { embedded, openTestDatabase } from "./test-database.ts";

/**
 * A database of its own for tests that must see whole-table numbers (views, gauges, retention): a new,
 * migrated database on the real server, dropped on close; on the embedded run, a fresh PGlite anyway.
 */
export async function openIsolatedDatabase(poolSize = 5): Promise<Database> {
  if (embedded) return openTestDatabase(1);
  const created = await createEmptyDatabase("iso");
  const db = await openDatabase({ url: created.url.toString(), dataDir: "", poolSize });
  await applyMigrations(db.pool);
  const close = db.close;
  return {
    ...db,
    async close() {
      await close();
      await created.drop();
    },
  };
}
