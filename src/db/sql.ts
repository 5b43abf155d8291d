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

/**
 * The statement timeout the server keeps inside a transaction on `pool`: a second under the pool's client-side
 * query timeout, so that the server stops a stuck statement first. Undefined when the pool has none (embedded).
 */
function serverTimeoutOf(pool: pg.Pool): number | undefined {
  const clientTimeout = pool.options.query_timeout;
  return clientTimeout ? Math.max(clientTimeout - 1_000, clientTimeout / 2) : undefined;
}

const isClientTimeout = (error: unknown) => (error as Error | undefined)?.message === "Query read timeout";

/**
 * BEGIN ... COMMIT on one pooled connection; ROLLBACK on error. Each statement ends within just under the pool's
 * query timeout (and within `withinMs` when given), enforced by the server with `SET LOCAL` (so it works
 * through a transaction pooler): a statement the server stops leaves the connection usable and the ROLLBACK
 * immediate, where the client's own timeout leaves the statement running and a ROLLBACK queued behind it.
 */
export async function inTransaction<T>(
  pool: pg.Pool,
  work: (sql: RunSql) => Promise<T>,
  withinMs?: number,
): Promise<T> {
  const poolLimit = serverTimeoutOf(pool);
  const statementTimeoutMs = withinMs === undefined ? poolLimit : Math.min(withinMs, poolLimit ?? withinMs);
  const client = await pool.connect();
  try {
    const limit = statementTimeoutMs
      ? `; SET LOCAL statement_timeout = ${Math.max(Math.round(statementTimeoutMs), 1)}`
      : "";
    await client.query(`BEGIN${limit}`);
    const result = await work(pgRunner(client));
    await client.query("COMMIT");
    client.release();
    return result;
  } catch (error) {
    // After the client's timeout the stuck statement still holds the connection: a ROLLBACK would wait behind
    // it. Dropping the connection ends the transaction as surely.
    if (!isClientTimeout(error)) await client.query("ROLLBACK").catch(() => {});
    // Drop the connection rather than return one in an unknown state to the pool.
    client.release(true);
    throw error;
  }
}
