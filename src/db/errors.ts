import { storageUnavailable } from "../http/problem.ts";

// SQLSTATE classes that mean "the database is not there right now", not "your query is wrong":
// 08 connection exception, 53 insufficient resources, 57P admin shutdown / cannot connect now.
const UNAVAILABLE_SQLSTATE = /^(08|53|57P)/;
const UNAVAILABLE_MESSAGE =
  /ECONNREFUSED|ECONNRESET|ETIMEDOUT|EPIPE|Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error|connection is closed|Can't reach database/i;

/** True when `error` (or any error in its `cause` chain) says the database could not be reached. */
export function isDatabaseUnavailable(error: unknown): boolean {
  for (let current = error, depth = 0; current && depth < 8; depth++) {
    const { code, message, cause } = current as { code?: unknown; message?: unknown; cause?: unknown };
    if (typeof code === "string" && (UNAVAILABLE_SQLSTATE.test(code) || UNAVAILABLE_MESSAGE.test(code))) return true;
    if (typeof message === "string" && UNAVAILABLE_MESSAGE.test(message)) return true;
    current = cause;
  }
  return false;
}

/** Runs a database call and turns "database unreachable" into the 503 `storage_unavailable` problem. */
export async function withStorage<T>(work: () => Promise<T>, extra: Record<string, unknown> = {}): Promise<T> {
  try {
    return await work();
  } catch (error) {
    if (isDatabaseUnavailable(error)) throw storageUnavailable(extra);
    throw error;
  }
}
