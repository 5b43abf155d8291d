import type pg from "pg";
import { type ClaimedDelivery, type DeliveryStatus, saveAttempt } from "./repository.ts";

/** Waits after the 1st..7th failed attempt; the 8th failure makes the delivery `failed` (about 28 hours in all). */
export const RETRY_SCHEDULE_MS = [5_000, 300_000, 1_800_000, 7_200_000, 18_000_000, 36_000_000, 36_000_000];
export const MAX_ATTEMPTS = RETRY_SCHEDULE_MS.length + 1;
/** An endpoint that has failed everything for this long is disabled. */
export const DISABLE_AFTER_FAILING_MS = 5 * 86_400_000;

export interface AttemptOutcome {
  ok: boolean;
  statusCode?: number;
  error?: string;
  response?: string;
  /** 410 Gone: the receiver asks never to be called again. */
  gone?: boolean;
}

/** Records one attempt: delivered, or the next try on the schedule, or `failed` after the last one. */
export async function recordAttempt(pool: pg.Pool, delivery: ClaimedDelivery, outcome: AttemptOutcome, now: Date) {
  const attempts = delivery.attempts + 1;
  const waitMs = RETRY_SCHEDULE_MS[attempts - 1];
  const status: DeliveryStatus = outcome.ok ? "delivered" : waitMs === undefined ? "failed" : "pending";
  const nextAttemptAt = new Date(now.getTime() + (waitMs ?? 0));
  await saveAttempt(pool, {
    deliveryId: delivery.id,
    status,
    attempts,
    at: now,
    nextAttemptAt,
    statusCode: outcome.statusCode ?? null,
    error: outcome.ok ? null : (outcome.error ?? "failed"),
    response: outcome.response ?? null,
    gone: outcome.gone === true,
    disableAfterFailingMs: DISABLE_AFTER_FAILING_MS,
  });
}
