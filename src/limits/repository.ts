import type pg from "pg";
import type { RunSql } from "../db/sql.ts";

/**
 * Counts one hit on `key`, in one atomic upsert: it starts a new window of `windowMs` when the old one has
 * ended, otherwise adds one, and returns the count (no read-then-write race between instances).
 */
export async function incrementRateLimitCounter(
  pool: pg.Pool,
  key: string,
  windowMs: number,
): Promise<{ hits: number; resetAt: Date }> {
  const { rows } = await pool.query<{ hits: number; reset_at: Date }>({
    name: "rate_limit_increment",
    text: `INSERT INTO rate_limit_counters AS c (key, hits, reset_at)
          VALUES ($1, 1, now() + $2 * interval '1 millisecond')
          ON CONFLICT (key) DO UPDATE SET
            hits = CASE WHEN c.reset_at <= now() THEN 1 ELSE c.hits + 1 END,
            reset_at = CASE WHEN c.reset_at <= now() THEN EXCLUDED.reset_at ELSE c.reset_at END
          RETURNING hits, reset_at`,
    values: [key, windowMs],
  });
  const row = rows[0] as { hits: number; reset_at: Date };
  return { hits: row.hits, resetAt: row.reset_at };
}

export async function decrementRateLimitCounter(pool: pg.Pool, key: string): Promise<void> {
  await pool.query("UPDATE rate_limit_counters SET hits = greatest(hits - 1, 0) WHERE key = $1", [key]);
}

export async function deleteRateLimitCounter(pool: pg.Pool, key: string): Promise<void> {
  await pool.query("DELETE FROM rate_limit_counters WHERE key = $1", [key]);
}

// First key of the two-key advisory locks on recipient numbers: its own lock space, apart from the
// single-key locks on message uuids, migrations and retention.
const RECIPIENT_LOCK_CLASS = 7_300_001;

/** Takes `to`'s advisory lock until the transaction ends: counting and adding its sends happen one at a time. */
export async function lockRecipient(sql: RunSql, to: string): Promise<void> {
  await sql("SELECT pg_advisory_xact_lock($1, hashtext($2))", [RECIPIENT_LOCK_CLASS, to], "recipient_lock");
}

/** The database's clock and the times of the sends to `to` in the last `withinMs`, oldest first. */
export async function recentRecipientSends(
  sql: RunSql,
  to: string,
  withinMs: number,
): Promise<{ now: Date; sent: Date[] } | undefined> {
  const [row] = await sql<{ now: Date; sent: Date[] }>(
    `SELECT clock_timestamp() AS now, ARRAY(
         SELECT sent_at FROM recipient_sends
         WHERE "to" = $1 AND sent_at > clock_timestamp() - $2 * interval '1 millisecond' ORDER BY sent_at) AS sent`,
    [to, withinMs],
    "recipient_sends_recent",
  );
  return row;
}

/** Counts one send to `to` at `at`, deleting its sends older than `keepMs` on the way. */
export async function addRecipientSend(
  sql: RunSql,
  send: { to: string; team: string; at: Date; keepMs: number },
): Promise<void> {
  await sql(
    `WITH pruned AS (
         DELETE FROM recipient_sends WHERE "to" = $1 AND sent_at <= $3::timestamptz - $4 * interval '1 millisecond')
       INSERT INTO recipient_sends ("to", team, sent_at) VALUES ($1, $2, $3)`,
    [send.to, send.team, send.at, send.keepMs],
    "recipient_sends_add",
  );
}
