import type { Logger } from "pino";
import type { Expiry } from "./expiry.ts";
import type { Reconciler } from "./reconciler.ts";

export interface ReconcileJobOptions {
  reconciler: Reconciler;
  expiry?: Expiry;
  /** Settles statuses left buffered although their message exists (see `settleStragglers`). */
  settleStragglers?: () => Promise<number>;
  logger: Logger;
  /** Time between runs (RECONCILE_INTERVAL_MS); 0: the job never runs. */
  intervalMs: number;
  /** Longest wait after repeated Betatel failures (unless Betatel's Retry-After asks for more). */
  maxBackoffMs?: number;
}

/**
 * Runs the reconciler, then expiry, then settles stray buffered statuses, every `intervalMs`, one run at a time. When Betatel pushes back (429,
 * 5xx, timeouts) the wait doubles with each failed run, and is at least what `Retry-After` asked for.
 */
export function createReconcileJob(options: ReconcileJobOptions) {
  const maxBackoffMs = options.maxBackoffMs ?? 15 * 60_000;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;
  let stopped = true;
  let failures = 0;

  async function tick(): Promise<number> {
    let retryAfterMs: number | undefined;
    let failed = false;
    try {
      const summary = await options.reconciler.runOnce();
      if (summary.backoff) {
        failed = true;
        retryAfterMs = summary.backoff.retryAfterMs;
      }
    } catch (error) {
      failed = true;
      options.logger.error({ err: error }, "reconcile run failed");
    }
    try {
      await options.expiry?.runOnce();
    } catch (error) {
      options.logger.error({ err: error }, "expiry run failed");
    }
    try {
      const settled = (await options.settleStragglers?.()) ?? 0;
      if (settled > 0) options.logger.info({ settled }, "settled buffered statuses of stored messages");
    } catch (error) {
      options.logger.error({ err: error }, "settling buffered statuses failed");
    }
    if (!failed) {
      failures = 0;
      return options.intervalMs;
    }
    failures++;
    const backoff = Math.min(maxBackoffMs, options.intervalMs * 2 ** failures);
    const delay = Math.max(backoff, retryAfterMs ?? 0);
    options.logger.warn({ failures, delayMs: delay }, "reconciler backing off");
    return delay;
  }

  function schedule(delay: number) {
    if (stopped) return;
    timer = setTimeout(() => {
      running = tick().then((next) => {
        running = undefined;
        schedule(next);
      });
    }, delay);
    timer.unref();
  }

  return {
    start() {
      if (options.intervalMs <= 0 || !stopped) return;
      stopped = false;
      schedule(0);
    },
    /** Stops scheduling and waits for a run in progress to finish. */
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      await running;
    },
  };
}
