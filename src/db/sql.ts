import type pg from "pg";

/**
 * Runs one parameterised statement. Implemented by a pg client/pool and by a Prisma transaction. `name` (for
 * constant SQL only) makes it a server-side prepared statement: parsed and planned once per connection.
 */
export type RunSql = <Row = Record<string, unknown>>(text: string, values?: unknown[], name?: string) => Promise<Row[]>;

export const pgRunner =
  (client: pg.Pool | pg.PoolClient): RunSql =>
  async (text, values, name) =>
    (await client.query(name ? { name, text, values } : { text, values })).rows;

/** BEGIN ... COMMIT on one pooled connection; ROLLBACK on error. */
export async function inTransaction<T>(pool: pg.Pool, work: (sql: RunSql) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query("BEGIN");
    const result = await work(pgRunner(client));
    await client.query("COMMIT");
    client.release();
    return result;
  } catch (error) {
    await client.query("ROLLBACK").catch(() => {});
    // Drop the connection rather than return one in an unknown state to the pool.
    client.release(true);
    throw error;
  }
}
