import type pg from "pg";

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
