import type pg from "pg";
import type { Logger } from "pino";
import { repeatedTaskLog } from "../http/logging.ts";
import { recordAttempt } from "./deliveries.ts";
import { CALLBACK_TIMEOUT_MS, type CallbackResult, postEvent } from "./post-event.ts";
import { type ClaimedDelivery, claimDueDeliveries } from "./repository.ts";
import { endpointSigningSecret } from "./signing-secret.ts";

export interface CallbackWorkerOptions {
  pool: pg.Pool;
  logger: Logger;
  /** CALLBACKS_SECRET: endpoint signing secrets are derived from it. */
  masterSecret: string;
  allowPrivate: boolean;
  /** How often to look for due deliveries when idle; 0: the worker never runs. */
  pollMs: number;
  /** Deliveries in flight in this instance. */
  maxInFlight?: number;
  /** In flight for one endpoint: a dead or slow endpoint holds at most this many slots. */
  perEndpoint?: number;
  timeoutMs?: number;
  /** The clock retries are scheduled by; tests move it instead of sleeping hours. Signatures use the real time. */
  now?: () => Date;
  /** Called after each attempt (metrics). */
  onAttempt?: (result: AttemptResult) => void;
}

/** `success`, or why an attempt failed. */
export type AttemptResult = "success" | "http_error" | "timeout" | "refused" | "network_error";

function attemptResult(result: CallbackResult): AttemptResult {
  if (result.ok) return "success";
  if (result.statusCode !== undefined) return "http_error";
  if (result.error === "timeout") return "timeout";
  if (result.error.startsWith("refused")) return "refused";
  return "network_error";
}

/**
 * Delivers queued status callbacks. Every instance runs one; they share the queue through leases, so each
 * event goes out once in normal operation. The worker claims again as soon as a slot frees up, so a fast
 * receiver is fed as fast as it answers, while a dead one can only hold `perEndpoint` slots.
 */
export function createCallbackWorker(options: CallbackWorkerOptions) {
  const maxInFlight = options.maxInFlight ?? 128;
  const perEndpoint = options.perEndpoint ?? 32;
  const timeoutMs = options.timeoutMs ?? CALLBACK_TIMEOUT_MS;
  const leaseMs = timeoutMs * 4;
  const now = options.now ?? (() => new Date());
  const inFlight = new Map<string, ClaimedDelivery>();
  const attempts = new Set<Promise<void>>();
  let timer: NodeJS.Timeout | undefined;
  let claiming: Promise<number> | undefined;
  let again = false;
  let stopped = true;
  const claimLog = repeatedTaskLog(options.logger, "claiming status callbacks");

  function busyEndpoints(): string[] {
    const counts = new Map<string, number>();
    for (const delivery of inFlight.values())
      counts.set(delivery.endpointId, (counts.get(delivery.endpointId) ?? 0) + 1);
    return [...counts].filter(([, count]) => count >= perEndpoint).map(([id]) => id);
  }

  async function attempt(delivery: ClaimedDelivery) {
    const result = await postEvent({
      url: delivery.url,
      eventId: delivery.eventId,
      body: delivery.body,
      signingSecret: endpointSigningSecret(options.masterSecret, delivery.endpointId, delivery.secretVersion),
      allowPrivate: options.allowPrivate,
      timeoutMs,
    });
    options.onAttempt?.(attemptResult(result));
    if (!result.ok) {
      options.logger.warn(
        {
          deliveryId: delivery.id,
          endpointId: delivery.endpointId,
          attempt: delivery.attempts + 1,
          error: result.error,
        },
        "status callback failed",
      );
    }
    await recordAttempt(options.pool, delivery, result, now());
  }

  /** Claims what is due and starts it; resolves with how many it claimed, not when they are delivered. */
  async function claimAndStart(): Promise<number> {
    const room = maxInFlight - inFlight.size;
    if (room <= 0) return 0;
    const claimed = await claimDueDeliveries(options.pool, {
      now: now(),
      leaseMs,
      perEndpoint,
      limit: room,
      busyEndpoints: busyEndpoints(),
    });
    for (const delivery of claimed) {
      inFlight.set(delivery.id, delivery);
      const running = attempt(delivery)
        .catch((error) => options.logger.error({ err: error, deliveryId: delivery.id }, "recording a callback failed"))
        .finally(() => {
          inFlight.delete(delivery.id);
          attempts.delete(running);
          if (!stopped) wake();
        });
      attempts.add(running);
    }
    return claimed.length;
  }

  /** One claim at a time; a wake-up during a claim runs another right after it. */
  function wake() {
    if (claiming) {
      again = true;
      return;
    }
    claiming = claimAndStart()
      .then(
        (count) => {
          claimLog.succeeded();
          return count;
        },
        (error: unknown) => {
          claimLog.failed(error);
          return 0;
        },
      )
      .finally(() => {
        claiming = undefined;
        if (again && !stopped) {
          again = false;
          wake();
        }
      });
  }

  return {
    start() {
      if (options.pollMs <= 0 || !stopped) return;
      stopped = false;
      timer = setInterval(wake, options.pollMs);
      timer.unref();
      wake();
    },
    /** Claims and delivers what is due now, and waits for those deliveries (tests, the CLI). */
    async runOnce(): Promise<number> {
      const count = await claimAndStart();
      await Promise.all(attempts);
      return count;
    },
    /** Stops claiming and waits for deliveries in flight (each ends within its timeout). */
    async stop() {
      stopped = true;
      clearInterval(timer);
      await claiming;
      // Each attempt ends within its timeout; one cut by the exit is taken over when its lease runs out.
      await Promise.race([Promise.all(attempts), new Promise((resolve) => setTimeout(resolve, timeoutMs + 1000))]);
    },
  };
}

export type CallbackWorker = ReturnType<typeof createCallbackWorker>;
