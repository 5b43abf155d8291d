import { createHash, randomUUID } from "node:crypto";
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import pg from "pg";
import type { Database } from "./database.ts";

export const MIGRATIONS_DIR = path.resolve(import.meta.dirname, "../../prisma/migrations");

/**
 * A migration whose first line is this comment runs outside a transaction, for statements Postgres refuses
 * inside one (`CREATE INDEX CONCURRENTLY`). Keep it to one statement: it is sent as one query.
 */
export const NO_TRANSACTION_MARKER = "-- no-transaction";

// Same key Prisma Migrate uses, so this runner and `prisma migrate deploy` also exclude each other.
const MIGRATION_LOCK = 72707369;

/**
 * Applies pending migrations to the service's database. On a Postgres server it uses a connection of its own,
 * without the pool's query timeout: a migration (or the wait for another instance's) may take longer.
 */
export async function migrateDatabase(db: Database): Promise<string[]> {
  if (!db.url) return applyMigrations(db.pool);
  const pool = new pg.Pool({ connectionString: db.url, max: 1, application_name: "whatsapp-otp-tracker:migrate" });
  pool.on("error", () => {});
  try {
    return await applyMigrations(pool);
  } finally {
    await pool.end();
  }
}

/**
 * Applies pending Prisma migrations with Prisma Migrate's own bookkeeping (`_prisma_migrations`, sha256
 * checksums), so `prisma migrate status`/`deploy` agree with it. Runs under an advisory lock: instances
 * starting together apply each migration once. Returns the names it applied.
 */
export async function applyMigrations(pool: pg.Pool, dir = MIGRATIONS_DIR): Promise<string[]> {
  const client = await pool.connect();
  try {
    await client.query("SELECT pg_advisory_lock($1)", [MIGRATION_LOCK]);
    await client.query(`CREATE TABLE IF NOT EXISTS _prisma_migrations (
      id VARCHAR(36) PRIMARY KEY NOT NULL,
      checksum VARCHAR(64) NOT NULL,
      finished_at TIMESTAMPTZ,
      migration_name VARCHAR(255) NOT NULL,
      logs TEXT,
      rolled_back_at TIMESTAMPTZ,
      started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
      applied_steps_count INTEGER NOT NULL DEFAULT 0)`);
    const done = await client.query<{ migration_name: string; checksum: string }>(
      "SELECT migration_name, checksum FROM _prisma_migrations WHERE finished_at IS NOT NULL AND rolled_back_at IS NULL",
    );
    const applied = new Map(done.rows.map((row) => [row.migration_name, row.checksum]));
    const names = (await readdir(dir, { withFileTypes: true }))
      .filter((entry) => entry.isDirectory())
      .map((entry) => entry.name)
      .sort();
    const newlyApplied: string[] = [];
    for (const name of names) {
      const sql = await readFile(path.join(dir, name, "migration.sql"), "utf8");
      const appliedChecksum = applied.get(name);
      if (appliedChecksum !== undefined) {
        if (!matchesChecksum(sql, appliedChecksum)) {
          throw new Error(
            `migration ${name} was changed after it was applied (its checksum differs from _prisma_migrations): restore the applied file and put the change in a new migration`,
          );
        }
        continue;
      }
      try {
        if (outsideTransaction(sql)) {
          // One statement per file: a multi-statement query is one implicit transaction in Postgres.
          await client.query(sql);
          await record(client, name, sql);
        } else {
          await client.query("BEGIN");
          await client.query(sql);
          await record(client, name, sql);
          await client.query("COMMIT");
        }
      } catch (error) {
        await client.query("ROLLBACK");
        throw new Error(`migration ${name} failed: ${(error as Error).message}`);
      }
      newlyApplied.push(name);
    }
    return newlyApplied;
  } finally {
    await client.query("SELECT pg_advisory_unlock($1)", [MIGRATION_LOCK]).catch(() => {});
    client.release();
  }
}

function outsideTransaction(sql: string): boolean {
  return sql.split("\n", 1)[0]?.trim() === NO_TRANSACTION_MARKER;
}

const sha256 = (text: string) => createHash("sha256").update(text).digest("hex");

/** As Prisma Migrate: a file that differs only in line endings (a Windows checkout) is the same migration. */
function matchesChecksum(sql: string, checksum: string): boolean {
  const lf = sql.replace(/\r\n/g, "\n");
  return [sql, lf, lf.replace(/\n/g, "\r\n")].some((variant) => sha256(variant) === checksum);
}

async function record(client: pg.PoolClient, name: string, sql: string): Promise<void> {
  await client.query(
    `INSERT INTO _prisma_migrations (id, checksum, finished_at, migration_name, applied_steps_count)
     VALUES ($1, $2, now(), $3, 1)`,
    [randomUUID(), sha256(sql), name],
  );
}
