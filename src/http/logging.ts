import { randomUUID } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import pino, { type Logger } from "pino";
import { pinoHttp } from "pino-http";

// Secrets never reach a log line: header values are censored and URLs lose their query string
// (the webhook may carry its secret as `?token=`). Bodies are never logged.
const REDACT = [
  "req.headers.authorization",
  "req.headers['x-api-key']",
  "req.headers['x-webhook-secret']",
  "req.headers['webhook-signature']",
  "req.headers.cookie",
  "*.text",
  "*.apiKey",
  "*.password",
];

/** Log bytes waiting for stdout beyond which new lines are dropped: a stalled reader must not exhaust memory. */
const LOG_BUFFER_LIMIT = 8 * 1024 * 1024;

/**
 * Logs to `destination`, or to stdout asynchronously: under load, lines written while a write is in flight go out
 * together in one system call instead of one each (pino flushes what is left when the process exits).
 */
export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  return pino(
    { level, redact: { paths: REDACT, censor: "[redacted]" } },
    destination ?? pino.destination({ dest: 1, sync: false, maxLength: LOG_BUFFER_LIMIT }),
  );
}

/**
 * The log of a task that runs again and again in the background. While the database is down it fails on every
 * run, so it logs the first failure, then at most one line per `quietMs` with the count, and one line when it
 * works again: an outage is visible without burying everything else in the log.
 */
export function repeatedTaskLog(logger: Logger, task: string, quietMs = 60_000) {
  let failures = 0;
  let loggedAt = 0;
  return {
    failed(error: unknown) {
      failures++;
      const now = Date.now();
      if (failures > 1 && now - loggedAt < quietMs) return;
      loggedAt = now;
      logger.error({ err: error, failures }, `${task} failed`);
    },
    succeeded() {
      if (failures === 0) return;
      logger.info({ failures }, `${task} works again`);
      failures = 0;
    },
  };
}

const REQUEST_ID = /^[\w.:-]{1,128}$/;

/** Honours a sane incoming x-request-id, otherwise makes one; echoes it either way. */
function requestId(req: IncomingMessage, res: ServerResponse): string {
  const incoming = req.headers["x-request-id"];
  const id = typeof incoming === "string" && REQUEST_ID.test(incoming) ? incoming : randomUUID();
  res.setHeader("x-request-id", id);
  return id;
}

const levelFor = (statusCode: number, error?: unknown) =>
  error || statusCode >= 500 ? "error" : statusCode >= 400 ? "warn" : "info";

export function requestLogger(logger: Logger) {
  return pinoHttp<IncomingMessage, ServerResponse>({
    logger,
    genReqId: requestId,
    customLogLevel: (_req, res, error) => levelFor(res.statusCode, error),
    serializers: {
      req: (req: { id: unknown; method: string; url: string; headers: Record<string, unknown> }) => ({
        id: req.id,
        method: req.method,
        url: req.url.split("?")[0],
        headers: { "user-agent": req.headers["user-agent"], "content-type": req.headers["content-type"] },
      }),
      res: (res: { statusCode: number }) => ({ statusCode: res.statusCode }),
    },
  });
}

/**
 * The same one line per request as `requestLogger`, for a hot machine-to-machine route: no child logger per
 * request, and nothing is built unless the line's level is enabled. `req.log` is the app's logger.
 */
export function lightRequestLogger(logger: Logger) {
  return (
    req: IncomingMessage & { id?: unknown; log?: Logger; originalUrl?: string },
    res: ServerResponse,
    next: () => void,
  ) => {
    const start = performance.now();
    const id = requestId(req, res);
    req.id = id;
    req.log = logger;
    res.once("finish", () => {
      const level = levelFor(res.statusCode);
      if (!logger.isLevelEnabled(level)) return;
      logger[level](
        {
          req: {
            id,
            method: req.method,
            // Not `req.url`: a router strips its mount path from it (the webhook's line said "/betatel").
            url: (req.originalUrl ?? req.url)?.split("?")[0],
            headers: { "user-agent": req.headers["user-agent"], "content-type": req.headers["content-type"] },
          },
          res: { statusCode: res.statusCode },
          responseTime: Math.round(performance.now() - start),
        },
        "request completed",
      );
    });
    next();
  };
}
