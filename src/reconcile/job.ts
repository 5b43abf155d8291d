import type { Logger } from "pino";
import type { Expiry } from "./expiry.ts";
import type { Reconciler } from "./reconciler.ts";

export interface PeriodicJob {
  start(): void;
  /** Stops scheduling and waits for a run in progress to finish. */
  stop(): Promise<void>;
}

interface PeriodicOptions {
  /** Time between runs; 0: the job never runs. */
  intervalMs: number;
  /** One run; `backoff` set when it should wait longer than usual before the next one. */
  run: () => Promise<{ backoff?: { retryAfterMs?: number } } | undefined>;
  logger: Logger;
  /** Longest wait after repeated failures (unless a Retry-After asks for more). */
  maxBackoffMs?: number;
}

/**
 * Runs `run` every `intervalMs`, one run at a time. After a failed run (it threw, or asked to back off) the
 * wait doubles with each failure in a row, and is at least what `retryAfterMs` asked for.
 */
function createPeriodicJob(name: string, options: PeriodicOptions): PeriodicJob {
  const maxBackoffMs = options.maxBackoffMs ?? 15 * 60_000;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;
  let stopped = true;
  let failures = 0;

  async function tick(): Promise<number> {
    let retryAfterMs: number | undefined;
    let failed = false;
    try {
      const result = await options.run();
      if (result?.backoff) {
        failed = true;
        retryAfterMs = result.backoff.retryAfterMs;
      }
    } catch (error) {
      failed = true;
      options.logger.error({ err: error }, `${name} run failed`);
    }
    if (!failed) {
      failures = 0;
      return options.intervalMs;
    }
    failures++;
    const backoff = Math.min(maxBackoffMs, options.intervalMs * 2 ** failures);
    const delay = Math.max(backoff, retryAfterMs ?? 0);
    options.logger.warn({ failures, delayMs: delay }, `${name} backing off`);
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
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      await running;
    },
  };
}

export interface ReconcileJobOptions {
  reconciler: Reconciler;
  /** Adopts messages known only by their buffered statuses (see `createOrphanAdoption`); asks Betatel too. */
  adoptOrphans?: () => Promise<unknown>;
  logger: Logger;
  /** Time between runs (RECONCILE_INTERVAL_MS); 0: the job never runs. */
  intervalMs: number;
  maxBackoffMs?: number;
}

/**
 * The delivery-record poller: the reconciler, then orphan adoption, every `intervalMs`. When Betatel pushes
 * back (429, timeouts, several 5xx in a row) the wait doubles with each failed run, and is at least what
 * `Retry-After` asked for; adoption waits for a run where Betatel answered.
 */
export function createReconcileJob(options: ReconcileJobOptions): PeriodicJob {
  return createPeriodicJob("reconciler", {
    intervalMs: options.intervalMs,
    logger: options.logger,
    maxBackoffMs: options.maxBackoffMs,
    async run() {
      const summary = await options.reconciler.runOnce();
      if (summary.backoff) return summary;
      await options.adoptOrphans?.();
      return summary;
    },
  });
}

export interface SweepJobOptions {
  expiry?: Expiry;
  /** Settles statuses left buffered although their message exists (see `settleStragglers`). */
  settleStragglers?: () => Promise<number>;
  logger: Logger;
  /** Time between runs (SWEEP_INTERVAL_MS); 0: the job never runs. */
  intervalMs: number;
}

/**
 * Expiry and the straggler sweep: database work only, on their own schedule, so they go on when the
 * delivery-record poller is off (RECONCILE_INTERVAL_MS=0) or backing off from Betatel.
 */
export function createSweepJob(options: SweepJobOptions): PeriodicJob {
  return createPeriodicJob("sweep", {
    intervalMs: options.intervalMs,
    logger: options.logger,
    async run() {
      let failed = false;
      try {
        await options.expiry?.runOnce();
      } catch (error) {
        failed = true;
        options.logger.error({ err: error }, "expiry run failed");
      }
      try {
        const settled = (await options.settleStragglers?.()) ?? 0;
        if (settled > 0) options.logger.info({ settled }, "settled buffered statuses of stored messages");
      } catch (error) {
        failed = true;
        options.logger.error({ err: error }, "settling buffered statuses failed");
      }
      return failed ? { backoff: {} } : undefined;
    },
  });
}
