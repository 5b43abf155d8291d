import type { ServerOptions } from "node:http";
import type { RequestHandler } from "express";
import helmet from "helmet";

/**
 * Security headers for a JSON API (helmet's defaults: nosniff, frame denial, HSTS, a restrictive CSP,
 * no referrer leaks, cross-origin isolation headers).
 */
export const securityHeaders = (): RequestHandler => helmet();

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
