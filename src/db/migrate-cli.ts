// `npm run migrate`: apply pending migrations to DATABASE_URL (or the embedded database) and exit.
import { ConfigError, loadToolConfig } from "../config.ts";
import { openDatabase } from "./database.ts";
import { applyMigrations } from "./migrate.ts";
import { toolFailureMessage } from "./tool-failure.ts";

try {
  const config = loadToolConfig();
  const db = await openDatabase({ url: config.DATABASE_URL, dataDir: config.DATA_DIR, poolSize: 1 });
  try {
    const applied = await applyMigrations(db.pool);
    console.log(applied.length ? `applied: ${applied.join(", ")}` : "database is up to date");
  } finally {
    await db.close();
  }
} catch (error) {
  console.error(toolFailureMessage(error, [ConfigError]));
  process.exitCode = 1;
}
