import { POOL_CONNECTION_TIMEOUT_MS } from "../db/database.ts";

/**
 * How long storing a message Betatel accepted may take in total, retries included: two pool waits. Betatel
 * has sent the OTP by then, so a brief database failure (a reset connection, a full pool) is retried.
 */
export const STORE_BUDGET_MS = 2 * POOL_CONNECTION_TIMEOUT_MS;

/**
 * The longest a send runs once its Idempotency-Key is claimed: Betatel's deadline (one deadline covers the
 * call and its connection retries), storing the message (`STORE_BUDGET_MS`), then recording the answer for
 * the key (one pool wait), and a second of margin. A concurrent twin waits this long for the first answer.
 */
export function claimedSendMs(betatelTimeoutMs: number): number {
  return betatelTimeoutMs + STORE_BUDGET_MS + POOL_CONNECTION_TIMEOUT_MS + 1_000;
}

/**
 * The longest a send can still run after it was accepted: the first database step (claiming the key, one
 * pool wait), then `claimedSendMs`. Shutdown waits this long for sends in flight.
 */
export function sendDeadlineMs(betatelTimeoutMs: number): number {
  return POOL_CONNECTION_TIMEOUT_MS + claimedSendMs(betatelTimeoutMs);
}
