import type { RequestHandler, Response } from "express";
import { z } from "zod";
import { storageUnavailableReason } from "../db/errors.ts";
import { AppError, storageUnavailable } from "../http/problem.ts";
import { parseOrThrow } from "../http/validate.ts";
import { type MessageView, messageUuidSchema, statusSchema } from "../messages/schemas.ts";
import type { LiveHub, Watch } from "./hub.ts";
import { hasReached } from "./wait.ts";

export interface LiveDeps {
  hub: LiveHub;
  /** Comment lines that keep idle streams open through proxies. */
  heartbeatMs?: number;
  /** A fresh `watchUrl` for long-poll answers to API key callers (not to a watch token: it would renew itself). */
  watchUrl?: (uuid: string) => string;
}

/** What a browser's EventSource waits before it reconnects, sent as the stream's first line. */
export const STREAM_RETRY_MS = 3000;

/**
 * The SSE `id:` of a message state: it grows with every change. Each stored status event counts one, and one more
 * once it is decided (a status kept buffered and settled later changes the message without a new event).
 */
export function changeSequence(message: MessageView): number {
  return message.events.reduce((sum, event) => sum + (event.outcome === "buffered" ? 1 : 2), 0);
}

/** Which caller a watcher counts against: the API key (or "open" when the service has none). */
const callerOf = (res: Response) => res.locals.apiKeyId ?? "open";
/** Whose messages the caller may watch: its team's, or (a watch token, for one message) that message's. */
const teamOf = (res: Response) => (res.locals.watchToken ? null : res.locals.team);

export const longPollQuerySchema = z.object({
  waitFor: z
    .string()
    .transform((value) => value.toUpperCase())
    .pipe(statusSchema)
    .optional(),
  timeout: z.coerce.number().int().min(1).max(60).default(30),
});

/** `GET .../:uuid/stream`: the message's live status as Server-Sent Events. */
export function streamMessage(deps: LiveDeps): RequestHandler {
  const heartbeatMs = deps.heartbeatMs ?? 15_000;
  return async (req, res) => {
    const uuid = parseOrThrow(messageUuidSchema, req.params.uuid, "uuid");
    // A reconnecting EventSource sends the last id it saw: if the message is still there, nothing is repeated.
    const resumedFrom = req.get("last-event-id")?.trim();
    let last: string | undefined;
    const send = (message: MessageView) => {
      const data = JSON.stringify(message);
      if (data === last) return; // a re-read without a visible change (safety net, LISTEN reconnect)
      const id = String(changeSequence(message));
      const seenBefore = last === undefined && id === resumedFrom;
      last = data;
      if (!seenBefore) res.write(`id: ${id}\ndata: ${data}\n\n`);
    };
    let watch: Watch;
    try {
      watch = await deps.hub.watch(uuid, teamOf(res), callerOf(res), { onMessage: send, onClosing: () => res.end() });
    } catch (error) {
      const problem =
        error instanceof AppError ? error : storageUnavailableReason(error) ? storageUnavailable() : undefined;
      if (!res.locals.watchToken || problem?.status !== 503) throw error;
      req.log.warn({ err: error, code: problem.code }, "watch stream refused for now: the browser comes back later");
      return comeBackLater(res, problem);
    }
    if (!res.socket || res.socket.destroyed) return watch.stop(); // the client left during the first read
    if (req.method === "HEAD") {
      // The stream's headers (the message exists, the caller may watch it), and no stream to keep open.
      watch.stop();
      return openEventStream(res, STREAM_RETRY_MS).end();
    }
    openEventStream(res, STREAM_RETRY_MS);
    send(watch.first);
    const heartbeat = setInterval(() => res.write(": heartbeat\n\n"), heartbeatMs);
    res.on("close", () => {
      clearInterval(heartbeat);
      watch.stop();
    });
    watch.resume();
  };
}

function openEventStream(res: Response, retryMs: number): Response {
  res.writeHead(200, {
    "content-type": "text/event-stream; charset=utf-8",
    "cache-control": "no-cache, no-transform",
    connection: "keep-alive",
    // nginx and similar proxies would otherwise buffer the stream.
    "x-accel-buffering": "no",
  });
  res.write(`retry: ${retryMs}\n\n`);
  return res;
}

/**
 * A browser's EventSource gives up for good on any answer but 200, so a watch-token stream that cannot be served
 * for now (database unavailable, instance stopping) opens, names the problem in a comment and ends: the browser
 * comes back after Retry-After. API key callers get the 503 problem itself.
 */
function comeBackLater(res: Response, error: AppError) {
  openEventStream(res, Number(error.headers["Retry-After"] ?? STREAM_RETRY_MS / 1000) * 1000);
  res.end(`: ${error.code}: ${error.detail ?? error.title}\n\n`);
}

/**
 * The long-poll: `GET /:uuid?waitFor=DELIVERED&timeout=30`. Without either parameter it passes to the plain
 * GET. `timeout` alone waits for any status change. Never holds a database connection while it waits.
 */
export function longPoll(deps: LiveDeps): RequestHandler {
  return async (req, res, next) => {
    if (req.query.waitFor === undefined && req.query.timeout === undefined) return next();
    const uuid = parseOrThrow(messageUuidSchema, req.params.uuid, "uuid");
    const query = parseOrThrow(
      longPollQuerySchema,
      { waitFor: req.query.waitFor, timeout: req.query.timeout },
      "query",
    );
    // HEAD asks for the headers only: the plain read's, at once, rather than after a wait.
    if (req.method === "HEAD") return next();
    let timer: NodeJS.Timeout | undefined;
    let answered = false;
    const watch = await deps.hub.watch(uuid, teamOf(res), callerOf(res), {
      onMessage(message) {
        latest = message;
        if (reached(message)) done(message);
      },
      onClosing: () => done(latest),
    });
    if (!res.socket || res.socket.destroyed) return watch.stop();
    let latest = watch.first;
    const startStatus = watch.first.status;
    const reached = (message: typeof latest) =>
      query.waitFor ? hasReached(message.status, query.waitFor) : message.status !== startStatus;
    const done = (message: MessageView | undefined) => {
      if (answered) return;
      answered = true;
      clearTimeout(timer);
      watch.stop();
      answer(res, message, res.locals.watchToken ? undefined : deps.watchUrl);
    };
    res.on("close", () => {
      answered = true;
      clearTimeout(timer);
      watch.stop();
    });
    if (query.waitFor && reached(latest)) return done(latest);
    timer = setTimeout(() => {
      // At the timeout: the current state, read fresh (in case an announcement was lost).
      watch
        .current()
        .then((message) => done(message ?? latest))
        .catch(() => done(latest));
    }, query.timeout * 1000);
    watch.resume();
  };
}

function answer(res: Response, message: MessageView | undefined, watchUrl?: (uuid: string) => string) {
  if (res.writableEnded || res.destroyed) return;
  res.json(message && watchUrl ? { ...message, watchUrl: watchUrl(message.uuid) } : message);
}
