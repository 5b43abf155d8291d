import cors from "cors";
import type { RequestHandler } from "express";

/**
 * CORS for the endpoints a browser page may call (the stream and the long-poll of one message, with a watch
 * token): `Access-Control-Allow-Origin` echoes an origin of CORS_ORIGINS, never `*`, and no credentials (no
 * cookies, no API key headers). No origins: no CORS headers at all.
 */
export function browserOrigins(origins: readonly string[]): RequestHandler {
  if (origins.length === 0) return (_req, _res, next) => next();
  return cors({
    origin: [...origins],
    methods: ["GET"],
    // What EventSource itself sends on a reconnect; API key headers are deliberately not allowed.
    allowedHeaders: ["Last-Event-ID", "Cache-Control"],
    exposedHeaders: ["Retry-After"],
    credentials: false,
    maxAge: 600,
  });
}
