import type pg from "pg";
import type { Logger } from "pino";
import { expireVerifications } from "./repository.ts";

/**
 * Marks pending verifications past their expiry as expired every `intervalMs`, so that their
 * `verification.status` callback goes out and the funnel counts them. Returns the stop function.
 */
export function startVerificationExpiry(options: {
  pool: pg.Pool;
  logger: Logger;
  intervalMs: number;
  onExpired?: (count: number) => void;
}): () => Promise<void> {
  let running: Promise<void> | undefined;
  const timer = setInterval(() => {
    running ??= expireVerifications(options.pool)
      .then((count) => {
        if (count > 0) options.onExpired?.(count);
      })
      .catch((error: unknown) => options.logger.error({ err: error }, "expiring verifications failed"))
      .finally(() => {
        running = undefined;
      });
  }, options.intervalMs);
  timer.unref();
  return async () => {
    clearInterval(timer);
    await running;
  };
}
