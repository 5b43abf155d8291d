// What a command-line tool (`npm run migrate`, `keys`, `callbacks`) prints when it stops: one line, no stack.
import { storageUnavailableReason } from "./errors.ts";

type ErrorClass = abstract new (...args: never[]) => Error;

/**
 * The line for `error`. A database that cannot be reached or cannot serve is named by its host, never by
 * DATABASE_URL (it may hold the password); an `expected` error (a wrong configuration) is its message; any
 * other error is its message too, or its stack with LOG_LEVEL=debug (or trace), for a bug report.
 */
export function toolFailureMessage(
  error: unknown,
  expected: ErrorClass[],
  env: NodeJS.ProcessEnv = process.env,
): string {
  const reason = storageUnavailableReason(error);
  if (reason) return `cannot reach ${databaseLabel(env)} (${reason})`;
  if (!(error instanceof Error)) return String(error);
  if (expected.some((type) => error instanceof type)) return error.message;
  const debug = env.LOG_LEVEL === "debug" || env.LOG_LEVEL === "trace";
  return (debug && error.stack) || error.message;
}

function databaseLabel(env: NodeJS.ProcessEnv): string {
  if (!env.DATABASE_URL) return `the embedded database in ${env.DATA_DIR || "./.data"}`;
  try {
    const url = new URL(env.DATABASE_URL);
    // A socket directory may be given as ?host=/run/postgresql instead of in the authority.
    return `the database at ${url.host || url.searchParams.get("host") || "localhost"}`;
  } catch {
    return "the database at DATABASE_URL";
  }
}
