import express, { Router } from "express";
import type { Logger } from "pino";
import type { Betatel } from "./betatel/client.ts";
import type { Config } from "./config.ts";
import type { Database } from "./db/database.ts";
import { requireApiKey } from "./http/auth.ts";
import { requestLogger } from "./http/logging.ts";
import { notFoundHandler, problemHandler } from "./http/problem.ts";
import { securityHeaders, sendRateLimit } from "./http/security.ts";
import { createLocalNotifier, type MessageNotifier } from "./live/notifier.ts";
import { liveRouter, longPoll } from "./live/routes.ts";
import { listMessagesRoute } from "./messages/list.ts";
import { getMessage, messagesRouter } from "./messages/routes.ts";
import { healthRouter } from "./ops/health.ts";
import { instrumentBetatel } from "./ops/instrument-betatel.ts";
import { createMetrics, type Metrics } from "./ops/metrics.ts";
import { metricsRouter } from "./ops/metrics-route.ts";
import { openApiRouter } from "./ops/openapi.ts";
import { opsPageRouter } from "./ops/page/routes.ts";
import { webhookRouter } from "./webhooks/routes.ts";

export interface AppDeps {
  config: Config;
  db: Database;
  betatel: Betatel;
  logger: Logger;
  /** Defaults to a fresh per-app registry. */
  metrics?: Metrics;
  /** Live status fan-out (src/live); without one, an in-process notifier (changes made here only). */
  notifier?: MessageNotifier;
  /** SSE heartbeat period; tests shorten it. */
  heartbeatMs?: number;
}

/** Builds the HTTP app from its dependencies. Opens nothing and listens nowhere: `server.ts` does. */
export function createApp(deps: AppDeps): express.Express {
  const { config, db, logger } = deps;
  const metrics = deps.metrics ?? createMetrics({ pool: db.pool });
  const betatel = instrumentBetatel(deps.betatel, metrics);
  const notifier = deps.notifier ?? createLocalNotifier();
  const live = { db, notifier, heartbeatMs: deps.heartbeatMs };
  const app = express();
  app.disable("x-powered-by");
  app.use(metrics.httpMiddleware);
  app.use(requestLogger(logger));
  app.use(securityHeaders());

  app.use(healthRouter(db));
  app.use(metricsRouter(metrics, config.METRICS_TOKEN));
  app.use(openApiRouter());
  app.use(
    "/ops",
    opsPageRouter({
      pool: db.pool,
      access: {
        token: config.OPS_TOKEN,
        locked: config.NODE_ENV === "production" && !config.OPS_TOKEN,
        secureCookie: config.NODE_ENV === "production",
      },
      stuckAfterMs: config.RECONCILE_AFTER_MS,
    }),
  );

  app.use(
    "/webhooks",
    webhookRouter({
      db,
      secret: config.WEBHOOK_SECRET,
      signingSecret: config.WEBHOOK_SIGNING_SECRET,
      onApplied: (results) => {
        metrics.recordWebhookResults(results);
        notifier.published(results.flatMap((r) => (r.uuid && r.outcome === "applied" ? [r.uuid] : [])));
      },
    }),
  );

  const messages = messagesRouter({ db, betatel, logger, betatelTimeoutMs: config.BETATEL_TIMEOUT_MS });
  const v1 = Router();
  v1.use(requireApiKey(config.API_KEYS));
  v1.post("/messages", sendRateLimit(config.RATE_LIMIT_PER_MINUTE));
  // The list; the live routes; the messages router serves POST / and GET /:uuid.
  v1.get("/messages", listMessagesRoute(db));
  v1.use("/messages", liveRouter(live));
  v1.get("/messages/:uuid", longPoll(live));
  v1.use("/messages", messages);
  app.use("/v1", v1);
  // The path the service's users named; same handlers and same key as /v1.
  app.get("/messages/:uuid", requireApiKey(config.API_KEYS), longPoll(live), getMessage(db));

  app.use(notFoundHandler);
  app.use(problemHandler);
  return app;
}
