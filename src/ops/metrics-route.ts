import { type RequestHandler, Router } from "express";
import { unauthorized } from "../http/problem.ts";
import { bearerToken, matchesSecret } from "../http/secrets.ts";
import type { Metrics } from "./metrics.ts";

/**
 * `GET /metrics` in Prometheus text format. With `token` (METRICS_TOKEN) it requires
 * `Authorization: Bearer <token>`; without, it is open, so keep it off the public network.
 */
export function metricsRouter(metrics: Metrics, token: string | undefined): Router {
  const router = Router();
  const guard: RequestHandler = (req, _res, next) => {
    if (token && !matchesSecret(bearerToken(req.get("authorization")), [token])) {
      throw unauthorized("Present METRICS_TOKEN as `Authorization: Bearer`.", "metrics");
    }
    next();
  };
  router.get("/metrics", guard, async (_req, res) => {
    res.type(metrics.registry.contentType).send(await metrics.registry.metrics());
  });
  return router;
}
