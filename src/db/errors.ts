// The one place that decides whether a database failure means "the storage cannot serve now, try again"
// (answered 503 `storage_unavailable` with Retry-After) rather than "this request hit a bug" (500).
// docs/security.md (Faults: "Database cannot serve now") lists the same set.

/** SQLSTATE classes that are never the query's fault. */
const UNAVAILABLE_SQLSTATE_CLASSES = new Set([
  "08", // connection exception
  "53", // insufficient resources: too many connections (53300), disk full, out of memory
  "57", // operator intervention: admin/crash shutdown, cannot connect now (starting up, recovery), cancelled by timeout
  "58", // system error: I/O error and the like
]);

/** Single SQLSTATEs of other classes that mean the same for this service's statements. */
const UNAVAILABLE_SQLSTATES = new Set([
  "55000", // object not in prerequisite state: the database is not accepting connections (ALLOW_CONNECTIONS false)
  "55P03", // lock not available (lock_timeout)
  "25006", // read-only transaction: writes reached a standby (failover) or a database set read-only
  "25P03", // the session was ended for idling in a transaction
  "25P04", // the session was ended by transaction_timeout
  "40001", // serialization failure, still there after the caller's retries
  "40P01", // deadlock, still there after the caller's retries
  "40003", // statement completion unknown: the connection was lost while committing
]);

/** Prisma's codes for the same conditions (its driver adapter wraps the pg errors). */
const UNAVAILABLE_PRISMA_CODES = new Set([
  "P1001", // can't reach the database server
  "P1002", // the server was reached but timed out
  "P1008", // operation timed out
  "P1017", // the server closed the connection
  "P2024", // timed out fetching a connection from the pool
  "P2028", // transaction API: could not start (connection wait) or ran past its timeout
  "P2034", // write conflict or deadlock
  "P2037", // too many database connections
]);

/** The driver adapter's error kinds for them (`meta.driverAdapterError.cause.kind`). */
const UNAVAILABLE_ADAPTER_KINDS = new Set([
  "DatabaseNotReachable",
  "ConnectionClosed",
  "SocketTimeout",
  "TooManyConnections",
  "TransactionWriteConflict",
]);

/** Socket errors from Node on the way to the server. */
const UNAVAILABLE_SOCKET_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ECONNABORTED",
  "ETIMEDOUT",
  "EPIPE",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENETDOWN",
  "ENOTFOUND",
  "EAI_AGAIN",
]);

/** What pg, pg-pool and Prisma say when there is no usable connection; these errors carry no code. */
const UNAVAILABLE_MESSAGE = new RegExp(
  [
    "Connection terminated", // unexpectedly, due to connection timeout, or by end()
    "timeout exceeded when trying to connect", // the pool's connectionTimeoutMillis
    "is not queryable", // a client whose connection failed or was closed
    "Cannot use a pool after calling end", // shutting down
    "Query read timeout",
    "connection is closed",
    "Can't reach database server",
    "Unable to start a transaction in the given time",
  ].join("|"),
  "i",
);

const SQLSTATE = /^[0-9A-Z]{5}$/;

function codeMeansUnavailable(code: string): boolean {
  if (UNAVAILABLE_SOCKET_CODES.has(code) || UNAVAILABLE_PRISMA_CODES.has(code)) return true;
  if (!SQLSTATE.test(code)) return false;
  return UNAVAILABLE_SQLSTATES.has(code) || UNAVAILABLE_SQLSTATE_CLASSES.has(code.slice(0, 2));
}

/**
 * Why `error` means the database cannot serve right now (unreachable, refusing or ending sessions, out of
 * connections or resources, read-only, or still conflicting after retries): the SQLSTATE, Prisma or socket
 * code, adapter kind or driver message found in it or in any error it wraps (`cause`, Prisma's
 * `meta.driverAdapterError`, an AggregateError's `errors`). Undefined for errors in the query itself.
 */
export function storageUnavailableReason(error: unknown): string | undefined {
  const seen = new Set<unknown>();
  const pending: unknown[] = [error];
  while (pending.length > 0 && seen.size < 32) {
    const current = pending.pop();
    if (!current || typeof current !== "object" || seen.has(current)) continue;
    seen.add(current);
    if (current instanceof StorageUnavailableError) return current.reason;
    const { code, originalCode, kind, message, cause, meta, errors } = current as Record<string, unknown>;
    for (const value of [code, originalCode]) {
      if (typeof value === "string" && codeMeansUnavailable(value)) return value;
    }
    if (typeof kind === "string" && UNAVAILABLE_ADAPTER_KINDS.has(kind)) return kind;
    const matched = typeof message === "string" ? UNAVAILABLE_MESSAGE.exec(message) : null;
    if (matched) return matched[0];
    pending.push(cause, (meta as { driverAdapterError?: unknown } | undefined)?.driverAdapterError);
    if (Array.isArray(errors)) pending.push(...errors);
  }
  return undefined;
}

export const isDatabaseUnavailable = (error: unknown): boolean => storageUnavailableReason(error) !== undefined;

/** The storage could not serve a call; the HTTP layer answers it as 503 `storage_unavailable`. */
export class StorageUnavailableError extends Error {
  override name = "StorageUnavailableError";
  /** What made it unavailable (a code from the lists above, or e.g. "read-only"), for the log. */
  readonly reason: string;
  /** Fields for the problem body (e.g. the uuid of an OTP that went out but could not be stored). */
  readonly extra: Record<string, unknown>;
  constructor(options: { reason: string; extra?: Record<string, unknown>; cause?: unknown }) {
    super(`The database cannot serve this request now (${options.reason}).`, { cause: options.cause });
    this.reason = options.reason;
    this.extra = options.extra ?? {};
  }
}

/**
 * Runs a database call and turns "cannot serve now" into a `StorageUnavailableError`. The error handler
 * classifies any error the same way; this is for call sites that add fields or catch it themselves.
 */
export async function withStorage<T>(work: () => Promise<T>, extra: Record<string, unknown> = {}): Promise<T> {
  try {
    return await work();
  } catch (error) {
    const reason = storageUnavailableReason(error);
    if (reason) throw new StorageUnavailableError({ reason, extra, cause: error });
    throw error;
  }
}
