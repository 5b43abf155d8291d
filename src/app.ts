import express, { Router } from "express";
import type { Logger } from "pino";
import type { Betatel } from "./betatel/client.ts";
import { callbacksRouter } from "./callbacks/routes.ts";
import type { Config } from "./config.ts";
import type { Database } from "./db/database.ts";
import { requireApiKey } from "./http/auth.ts";
import { browserOrigins } from "./http/cors.ts";
import { lightRequestLogger, requestLogger } from "./http/logging.ts";
import { notFoundHandler, problemHandler } from "./http/problem.ts";
import { requireHostHeader, securityHeaders } from "./http/security.ts";
import { createKeyResolver, type KeyResolver } from "./keys/resolver.ts";
import { sendRateLimit } from "./limits/key-rate-limit.ts";
import { createSendGuard } from "./limits/send-guard.ts";
import { createLiveHub, type LiveHub } from "./live/hub.ts";
import { registerLiveMetrics } from "./live/metrics.ts";
import { createLocalNotifier, type MessageNotifier } from "./live/notifier.ts";
import { changedUuids } from "./live/publish.ts";
import { longPoll, streamMessage } from "./live/routes.ts";
import { apiKeyOrWatchToken, createWatchAccess } from "./live/watch-token.ts";
import type { InFlightSends } from "./messages/in-flight.ts";
import { listMessagesRoute } from "./messages/list.ts";
import { findMessage } from "./messages/repository.ts";
import { getMessage, messagesRouter } from "./messages/routes.ts";
import { healthRouter } from "./ops/health.ts";
import { instrumentBetatel } from "./ops/instrument-betatel.ts";
import { createMetrics, type Metrics } from "./ops/metrics.ts";
import { metricsRouter } from "./ops/metrics-route.ts";
import { methodNotAllowedHandler, openApiRouter } from "./ops/openapi.ts";
import { opsPageRouter } from "./ops/page/routes.ts";
import { verificationsRouter } from "./verifications/routes.ts";
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
  /** Sends in progress, which shutdown waits for (service.ts); untracked when absent. */
  inFlightSends?: InFlightSends;
  /**
   * Streams and long-polls (src/live); without one, a hub over `notifier` reading through the main pool.
   * `service.ts` gives it a read pool of its own.
   */
  live?: LiveHub;
  /** SSE heartbeat period; tests shorten it. */
  heartbeatMs?: number;
  /** Who a presented API key is (API_KEYS and the api_keys table); built from config and db by default. */
  keys?: KeyResolver;
}

/** Builds the HTTP app from its dependencies. Opens nothing and listens nowhere: `service.ts` does. */
export function createApp(deps: AppDeps): express.Express {
  const { config, db, logger } = deps;
  const metrics = deps.metrics ?? createMetrics({ pool: db.pool });
  const betatel = instrumentBetatel(deps.betatel, metrics);
  const hub =
    deps.live ??
    createLiveHub({
      notifier: deps.notifier ?? createLocalNotifier(),
      read: (uuid, team) => findMessage(db, uuid, team),
      limits: { maxWatchers: config.LIVE_MAX_WATCHERS, maxWatchersPerKey: config.LIVE_MAX_WATCHERS_PER_KEY },
    });
  registerLiveMetrics(metrics.registry, hub);
  const watch = createWatchAccess({ secret: config.WATCH_SECRET, publicUrl: config.PUBLIC_URL });
  const live = { hub, heartbeatMs: deps.heartbeatMs, watchUrl: watch.watchUrl };
  const app = express();
  app.disable("x-powered-by");
  // Which client address req.ip reports behind proxies (the webhook allowlist and per-sender limits use it).
  app.set("trust proxy", config.TRUST_PROXY);
  app.use(metrics.httpMiddleware);
  app.use(requireHostHeader);
  // Betatel's webhook, the hot path, before the browser-facing middleware: a machine-to-machine route needs no
  // helmet headers, and its request line is logged without a child logger per request.
  app.use(
    "/webhooks",
    webhookRouter({
      db,
      requestLog: lightRequestLogger(logger),
      secret: config.WEBHOOK_SECRET,
      signingSecret: config.WEBHOOK_SIGNING_SECRET,
      allowedIps: config.WEBHOOK_ALLOWED_IPS,
      bufferedPerMinute: config.WEBHOOK_BUFFERED_PER_MINUTE,
      onApplied: (results, settled) => {
        metrics.recordWebhookResults(results);
        hub.published(changedUuids(results, settled));
      },
    }),
  );
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

  const keys = deps.keys ?? createKeyResolver({ db, staticKeys: config.API_KEYS });
  const refused = (reason: string, team: string) => metrics.sendRefusals.inc({ reason, team: metrics.teamLabel(team) });
  const guard = createSendGuard({
    db,
    logger,
    recipientLimits: config.RECIPIENT_LIMITS,
    allowedCountries: config.ALLOWED_COUNTRIES,
    onRefused: refused,
  });
  const sendDeps = {
    db,
    betatel,
    logger,
    betatelTimeoutMs: config.BETATEL_TIMEOUT_MS,
    inFlight: deps.inFlightSends,
    guard,
    watchUrl: watch.watchUrl,
  };
  const messages = messagesRouter(sendDeps);
  const apiKey = requireApiKey(keys);
  const browsers = browserOrigins(config.CORS_ORIGINS);
  const v1 = Router();
  // A browser page reads one message's live status with the watch token of its watchUrl, cross-origin from
  // CORS_ORIGINS. These two routes (and their preflights) come before the API key guard; nothing else does.
  v1.options(["/messages/:uuid", "/messages/:uuid/stream"], browsers);
  v1.get("/messages/:uuid/stream", browsers, apiKeyOrWatchToken(watch, "stream", apiKey), streamMessage(live));
  v1.get(
    "/messages/:uuid",
    browsers,
    apiKeyOrWatchToken(watch, "long-poll", apiKey),
    longPoll(live),
    getMessage(db, watch.watchUrl),
  );
  v1.use(apiKey);
  v1.post("/messages", (_req, res, next) => {
    res.on("finish", () => metrics.sends.inc({ team: metrics.teamLabel(res.locals.team), status: res.statusCode }));
    next();
  });
  // One per-key rate over everything that sends: messages and verification codes share the count.
  const keyRateLimit = sendRateLimit(db, config.RATE_LIMIT_PER_MINUTE, (team) => {
    refused("key", team);
    logger.warn({ reason: "key", team }, "send refused by a limit");
  });
  v1.post("/messages", keyRateLimit);
  v1.get("/messages", listMessagesRoute(db));
  v1.use("/messages", messages);
  v1.use("/callbacks", callbacksRouter(db.pool));
  v1.post("/verifications", keyRateLimit);
  v1.use(
    "/verifications",
    verificationsRouter({
      ...sendDeps,
      settings: {
        secret: config.VERIFY_SECRET,
        ttlMs: config.VERIFY_TTL_MS,
        codeLength: config.VERIFY_CODE_LENGTH,
        textTemplate: config.VERIFY_TEXT,
        logCodes: !config.betatel && config.NODE_ENV !== "production",
      },
      onEvent: (event) => metrics.verifications.inc({ event }),
    }),
  );
  app.use("/v1", v1);
  // The path the service's users named; same handlers and same key as /v1 (no watch token, no CORS).
  app.get("/messages/:uuid", apiKey, longPoll(live), getMessage(db, watch.watchUrl));

  app.use(methodNotAllowedHandler());
  app.use(notFoundHandler);
  app.use(problemHandler);
  return app;
}
