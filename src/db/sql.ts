import type pg from "pg";

/** Runs one parameterised statement. Implemented by a pg client/pool and by a Prisma transaction. */
export type RunSql = <Row = Record<string, unknown>>(text: string, values?: unknown[]) => Promise<Row[]>;

export const pgRunner =
  (client: pg.Pool | pg.PoolClient): RunSql =>
  async (text, values) =>
    (await client.query(text, values)).rows;

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
