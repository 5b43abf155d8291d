import type pg from "pg";
import type { Logger } from "pino";
import { repeatedTaskLog } from "../http/logging.ts";
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
  const log = repeatedTaskLog(options.logger, "expiring verifications");
  const timer = setInterval(() => {
    running ??= expireVerifications(options.pool)
      .then((count) => {
        log.succeeded();
        if (count > 0) options.onExpired?.(count);
      })
      .catch(log.failed)
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
