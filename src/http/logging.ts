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

export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  return pino({ level, redact: { paths: REDACT, censor: "[redacted]" } }, destination);
}

const REQUEST_ID = /^[\w.:-]{1,128}$/;

export function requestLogger(logger: Logger) {
  return pinoHttp<IncomingMessage, ServerResponse>({
    logger,
    // Honour a sane incoming x-request-id, otherwise make one; echo it either way.
    genReqId(req, res) {
      const incoming = req.headers["x-request-id"];
      const id = typeof incoming === "string" && REQUEST_ID.test(incoming) ? incoming : randomUUID();
      res.setHeader("x-request-id", id);
      return id;
    },
    customLogLevel(_req, res, error) {
      if (error || res.statusCode >= 500) return "error";
      if (res.statusCode >= 400) return "warn";
      return "info";
    },
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
