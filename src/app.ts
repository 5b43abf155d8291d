import express, { Router } from "express";
import type { Logger } from "pino";
import type { Betatel } from "./betatel/client.ts";
import type { Config } from "./config.ts";
import type { Database } from "./db/database.ts";
import { requireApiKey } from "./http/auth.ts";
import { requestLogger } from "./http/logging.ts";
import { notFoundHandler, problemHandler } from "./http/problem.ts";
import { getMessage, messagesRouter } from "./messages/routes.ts";
import { webhookRouter } from "./webhooks/routes.ts";

export interface AppDeps {
  config: Config;
  db: Database;
  betatel: Betatel;
  logger: Logger;
}

/** Builds the HTTP app from its dependencies. Opens nothing and listens nowhere: `server.ts` does. */
export function createApp(deps: AppDeps): express.Express {
  const { config, db, betatel, logger } = deps;
  const app = express();
  app.disable("x-powered-by");
  app.use(requestLogger(logger));

  app.get("/healthz", (_req, res) => {
    res.json({ status: "ok" });
  });
  app.get("/readyz", async (_req, res) => {
    try {
      await db.pool.query("SELECT 1");
      res.json({ status: "ready", database: "up" });
    } catch {
      res
        .status(503)
        .type("application/problem+json")
        .json({ status: 503, title: "Not ready", code: "storage_unavailable", database: "down" });
    }
  });

  app.use(
    "/webhooks",
    webhookRouter({ db, secret: config.WEBHOOK_SECRET, signingSecret: config.WEBHOOK_SIGNING_SECRET }),
  );

  const messages = messagesRouter({ db, betatel, logger, betatelTimeoutMs: config.BETATEL_TIMEOUT_MS });
  const v1 = Router();
  v1.use(requireApiKey(config.API_KEYS));
  v1.use("/messages", messages);
  app.use("/v1", v1);
  // The path the service's users named; same handler and same key as /v1.
  app.get("/messages/:uuid", requireApiKey(config.API_KEYS), getMessage(db));

  app.use(notFoundHandler);
  app.use(problemHandler);
  return app;
}
