import type { RequestHandler } from "express";
import type pg from "pg";
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import { registerCallbackMetrics } from "../callbacks/metrics.ts";
import type { AttemptResult } from "../callbacks/worker.ts";
import { STATUSES } from "../tracking/status.ts";
import type { WebhookResult } from "../webhooks/routes.ts";
import { countMessagesByStatus } from "./repository.ts";

export interface MetricsOptions {
  /** Where the messages-by-status gauge counts rows. */
  pool: pg.Pool;
  /** How long one count of messages by status is reused, so frequent scrapes do not each hit the database. */
  statusCacheMs?: number;
}

export interface Metrics {
  /** Per app, not prom-client's global one: several apps in one process (tests) keep separate numbers. */
  registry: Registry;
  httpRequests: Counter<"method" | "route" | "status">;
  httpDuration: Histogram<"method" | "route" | "status">;
  webhookEvents: Counter<"outcome" | "status">;
  betatelCalls: Counter<"result">;
  betatelDuration: Histogram<"result">;
  /** The reconciler's delivery-record checks, by result (`error`: the record could not be had). */
  reconcileChecks: Counter<"result">;
  /** Messages created from Betatel's delivery record for statuses that had no message row. */
  orphansAdopted: Counter;
  /** `POST /v1/messages` answers by team and status code (the team label is bounded: see `teamLabel`). */
  sends: Counter<"team" | "status">;
  /** Sends refused by an abuse limit before Betatel was called, by reason and team. */
  sendRefusals: Counter<"reason" | "team">;
  /** The team as a label value: the first MAX_TEAM_LABELS teams seen keep their name, later ones are "other". */
  teamLabel(team: string): string;
  /** Express middleware timing every request, labelled by its route pattern. */
  httpMiddleware: RequestHandler;
  /** The webhook router's `onApplied` hook. */
  recordWebhookResults(results: WebhookResult[]): void;
  /** The callback worker's `onAttempt` hook. */
  recordCallbackAttempt(result: AttemptResult): void;
  /** `otp_verifications_total{event}`: started, approved, expired, max_attempts. */
  verifications: Counter<"event">;
}

// Teams are few (configured by operators); the cap only guards the label set against a misconfiguration.
const MAX_TEAM_LABELS = 50;

const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

export function createMetrics(options: MetricsOptions): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  // prom-client's sums of its per-type gauges are gauges named `_total`, which the exposition format keeps for
  // counters (promtool rejects them). The per-type gauges stay: `sum(nodejs_active_handles)` is the total.
  for (const name of ["nodejs_active_handles_total", "nodejs_active_requests_total", "nodejs_active_resources_total"]) {
    registry.removeSingleMetric(name);
  }

  const httpRequests = new Counter({
    name: "http_requests_total",
    help: "HTTP requests answered, by method, route pattern and status code.",
    labelNames: ["method", "route", "status"] as const,
    registers: [registry],
  });
  const httpDuration = new Histogram({
    name: "http_request_duration_seconds",
    help: "Time from request to the end of the answer, by method, route pattern and status code.",
    labelNames: ["method", "route", "status"] as const,
    buckets: LATENCY_BUCKETS,
    registers: [registry],
  });
  const webhookEvents = new Counter({
    name: "otp_webhook_events_total",
    help: "Status events received on the Betatel webhook, by outcome and status.",
    labelNames: ["outcome", "status"] as const,
    registers: [registry],
  });
  const betatelCalls = new Counter({
    name: "otp_betatel_requests_total",
    help: "Calls to Betatel's send API, by result (ok or the failure kind).",
    labelNames: ["result"] as const,
    registers: [registry],
  });
  const betatelDuration = new Histogram({
    name: "otp_betatel_request_duration_seconds",
    help: "Duration of calls to Betatel's send API (retries included), by result.",
    labelNames: ["result"] as const,
    buckets: LATENCY_BUCKETS,
    registers: [registry],
  });
  const reconcileChecks = new Counter({
    name: "otp_reconcile_checks_total",
    help: "Delivery-record checks of unresolved messages, by result (applied, unchanged, not_found, unknown_status, error).",
    labelNames: ["result"] as const,
    registers: [registry],
  });
  const orphansAdopted = new Counter({
    name: "otp_orphans_adopted_total",
    help: "Messages created from Betatel's delivery record because statuses arrived for a uuid never stored.",
    registers: [registry],
  });
  const verifications = new Counter({
    name: "otp_verifications_total",
    help: "Verifications by event: started, approved, expired, max_attempts.",
    labelNames: ["event"] as const,
    registers: [registry],
  });
  const sends = new Counter({
    name: "otp_sends_total",
    help: "POST /v1/messages answers, by team and HTTP status code.",
    labelNames: ["team", "status"] as const,
    registers: [registry],
  });
  const sendRefusals = new Counter({
    name: "otp_send_refusals_total",
    help: "Sends refused by an abuse limit before Betatel was called, by reason (recipient, key, country) and team.",
    labelNames: ["reason", "team"] as const,
    registers: [registry],
  });
  registerMessagesByStatus(registry, options);
  const teams = new Set<string>();
  const teamLabel = (team: string) => {
    if (teams.has(team)) return team;
    if (teams.size >= MAX_TEAM_LABELS) return "other";
    teams.add(team);
    return team;
  };
  const callbacks = registerCallbackMetrics(registry, options.pool);

  return {
    sends,
    sendRefusals,
    teamLabel,
    registry,
    httpRequests,
    httpDuration,
    webhookEvents,
    betatelCalls,
    betatelDuration,
    reconcileChecks,
    orphansAdopted,
    httpMiddleware: (req, res, next) => {
      const stop = httpDuration.startTimer();
      const route = captureRoutePattern(req);
      let counted = false;
      // "finish" when the answer was sent; "close" alone when the connection ended first: an event stream
      // or a long-poll the client left, or a client that gave up before any answer (counted as 499, the
      // usual "client closed request").
      const count = () => {
        if (counted) return;
        counted = true;
        const status = res.headersSent ? String(res.statusCode) : "499";
        const labels = { method: req.method, route: route.pattern ?? "unmatched", status };
        httpRequests.inc(labels);
        stop(labels);
      };
      res.once("finish", count);
      res.once("close", count);
      next();
    },
    recordCallbackAttempt: callbacks.recordAttempt,
    verifications,
    recordWebhookResults(results) {
      for (const result of results) {
        // An invalid item's status is whatever the sender wrote: keep the label set small and known.
        const status = STATUSES.includes(result.status as never) ? (result.status as string) : "unknown";
        webhookEvents.inc({ outcome: result.outcome, status });
      }
    },
  };
}

/**
 * The full route pattern (`/v1/messages/:uuid`) of the request, not its URL (which would explode the label
 * set). Express sets `req.route` when a route matches, with `req.baseUrl` the part of the URL the mount
 * paths matched at that moment; the base is reset again if the handler fails, so it is recorded on
 * assignment. Routing ignores letter case, so `req.baseUrl` keeps the caller's (`/WeBhOoKs`): lower-cased,
 * it is the mount path as written (all of them are lower case).
 */
function captureRoutePattern(req: Parameters<RequestHandler>[0]): { pattern: string | undefined } {
  const captured: { pattern: string | undefined } = { pattern: undefined };
  let route: unknown;
  Object.defineProperty(req, "route", {
    configurable: true,
    enumerable: true,
    get: () => route,
    set(value: { path?: unknown } | undefined) {
      route = value;
      if (value && typeof value.path === "string")
        captured.pattern = `${req.baseUrl}${value.path}`.toLowerCase().replace(/(.)\/$/, "$1");
    },
  });
  return captured;
}

/** `otp_messages{status}`: current rows per status, counted on scrape with one GROUP BY, cached briefly. */
function registerMessagesByStatus(registry: Registry, options: MetricsOptions) {
  const cacheMs = options.statusCacheMs ?? 5_000;
  let cached: { at: number; counts: Map<string, number> } | undefined;
  let inFlight: Promise<Map<string, number>> | undefined;

  const count = () => countMessagesByStatus(options.pool);

  new Gauge({
    name: "otp_messages",
    help: "Messages stored, by current status (counted at most every few seconds).",
    labelNames: ["status"] as const,
    registers: [registry],
    async collect() {
      this.reset();
      if (!cached || Date.now() - cached.at >= cacheMs) {
        inFlight ??= count().finally(() => {
          inFlight = undefined;
        });
        try {
          cached = { at: Date.now(), counts: await inFlight };
        } catch {
          // Database down: no series rather than a failed scrape; /readyz reports the database.
          return;
        }
      }
      for (const status of STATUSES) this.set({ status }, cached.counts.get(status) ?? 0);
    },
  });
}
