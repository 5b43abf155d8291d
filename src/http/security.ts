import type { ServerOptions } from "node:http";
import type { RequestHandler } from "express";
import { ipKeyGenerator, rateLimit } from "express-rate-limit";
import helmet from "helmet";
import { AppError } from "./problem.ts";

/**
 * Security headers for a JSON API (helmet's defaults: nosniff, frame denial, HSTS, a restrictive CSP,
 * no referrer leaks, cross-origin isolation headers).
 */
export const securityHeaders = (): RequestHandler => helmet();

/**
 * Rate limit for `POST /v1/messages`, per API key (`res.locals.apiKeyId`, so it must run after `requireApiKey`).
 * With API_KEYS unset every caller is "open": then the client address is the key. Counters live in this
 * process's memory: each instance counts on its own, so N instances allow up to N times the limit.
 * `perMinute` 0 turns the limit off.
 */
export function sendRateLimit(perMinute: number): RequestHandler {
  if (perMinute === 0) return (_req, _res, next) => next();
  return rateLimit({
    windowMs: 60_000,
    limit: perMinute,
    standardHeaders: "draft-7",
    legacyHeaders: false,
    keyGenerator: (req, res) =>
      res.locals.apiKeyId && res.locals.apiKeyId !== "open"
        ? `key:${res.locals.apiKeyId}`
        : `ip:${ipKeyGenerator(req.socket.remoteAddress ?? "unknown")}`,
    // Retry-After is set by the library before the handler runs (standardHeaders is on).
    handler: (_req, _res, next) =>
      next(
        new AppError(
          429,
          "rate_limited",
          "Too many requests",
          `At most ${perMinute} messages per minute per API key; retry after the time in Retry-After.`,
        ),
      ),
  });
}

/**
 * Bounded waits for slow or stalled clients (slowloris): headers within 10 s, the whole request within 30 s,
 * checked every second (Node's default check interval is 30 s). Keep-alive a little above common load
 * balancer idle timeouts so the balancer, not us, closes idle connections.
 */
export const HTTP_SERVER_OPTIONS: ServerOptions = {
  headersTimeout: 10_000,
  requestTimeout: 30_000,
  keepAliveTimeout: 65_000,
  connectionsCheckingInterval: 1_000,
};
