import type pg from "pg";
import { Counter, Gauge, type Registry } from "prom-client";
import { deliveryBacklog } from "./repository.ts";
import type { AttemptResult } from "./worker.ts";

/**
 * `otp_callback_attempts_total{result}`, and on scrape the queue depth and the age of the oldest pending
 * delivery (one indexed query for both, reused for a few seconds).
 */
export function registerCallbackMetrics(registry: Registry, pool: pg.Pool, cacheMs = 5_000) {
  const attempts = new Counter({
    name: "otp_callback_attempts_total",
    help: "Status callback delivery attempts, by result (success, http_error, timeout, refused, network_error).",
    labelNames: ["result"] as const,
    registers: [registry],
  });
  let cached: { at: number; backlog: Promise<{ pending: number; oldestPendingAgeSeconds: number }> } | undefined;
  const backlog = () => {
    if (!cached || Date.now() - cached.at >= cacheMs) cached = { at: Date.now(), backlog: deliveryBacklog(pool) };
    return cached.backlog;
  };
  const gauge = (name: string, help: string, pick: (b: Awaited<ReturnType<typeof backlog>>) => number) =>
    new Gauge({
      name,
      help,
      registers: [registry],
      async collect() {
        try {
          this.set(pick(await backlog()));
        } catch {
          // Database down: keep the last value rather than fail the scrape; /readyz reports the database.
          cached = undefined;
        }
      },
    });
  gauge("otp_callback_queue_depth", "Status callback deliveries waiting to be delivered.", (b) => b.pending);
  gauge(
    "otp_callback_oldest_pending_age_seconds",
    "Age of the oldest status callback delivery still pending (0 when none).",
    (b) => b.oldestPendingAgeSeconds,
  );
  return { recordAttempt: (result: AttemptResult) => attempts.inc({ result }) };
}
