import type { RequestHandler, Response } from "express";
import { Router } from "express";
import { z } from "zod";
import type { Database } from "../db/database.ts";
import { withStorage } from "../db/errors.ts";
import { notFound } from "../http/problem.ts";
import { parseOrThrow } from "../http/validate.ts";
import { findMessage } from "../messages/repository.ts";
import { messageUuidSchema, statusSchema } from "../messages/schemas.ts";
import type { MessageNotifier } from "./notifier.ts";
import { hasReached } from "./wait.ts";

export interface LiveDeps {
  db: Database;
  notifier: MessageNotifier;
  /** Comment lines that keep idle streams open through proxies. */
  heartbeatMs?: number;
}

export const longPollQuerySchema = z.object({
  waitFor: z
    .string()
    .transform((value) => value.toUpperCase())
    .pipe(statusSchema)
    .optional(),
  timeout: z.coerce.number().int().min(1).max(60).default(30),
});

const loadMessage = async (db: Database, uuid: string, team: string) => {
  const message = await withStorage(() => findMessage(db, uuid, team));
  if (!message) throw notFound(`No message with uuid ${uuid}.`, "message_not_found");
  return message;
};

/**
 * Calls `onChange` with the message each time it may have changed, one read at a time (a signal that arrives
 * during a read causes one more read after it, not a pile of them). Subscribes before the first read, so a
 * change between the two is never missed. Returns the first read, `resume` (call it once the first read is
 * handled: changes flow from then on) and `stop`.
 */
async function watchMessage(
  deps: LiveDeps,
  { uuid, team }: { uuid: string; team: string },
  onChange: (message: Awaited<ReturnType<typeof loadMessage>>) => void,
  onClosing: () => void,
) {
  let reading = false;
  let again = false;
  let stopped = false;
  // Signals before the caller has handled the first read are held back and answered by one read after it.
  let started = false;
  let missed = false;
  let closing = false;
  const reread = async () => {
    if (reading) {
      again = true;
      return;
    }
    reading = true;
    try {
      do {
        again = false;
        const message = await findMessage(deps.db, uuid, team);
        if (message && !stopped) onChange(message);
      } while (again && !stopped);
    } catch {
      // The database hiccuped: the next signal (or the timeout) reads again.
    } finally {
      reading = false;
    }
  };
  const unsubscribe = deps.notifier.subscribe(uuid, (signal) => {
    if (signal === "closing") {
      if (started) onClosing();
      else closing = true;
    } else if (started) void reread();
    else missed = true;
  });
  const stop = () => {
    stopped = true;
    unsubscribe();
  };
  try {
    const first = await loadMessage(deps.db, uuid, team);
    const resume = () => {
      started = true;
      if (closing) onClosing();
      else if (missed) void reread();
    };
    return { first, stop, resume };
  } catch (error) {
    stop();
    throw error;
  }
}

/** `GET /:uuid/stream` (Server-Sent Events) and the `waitFor`/`timeout` long-poll of `GET /:uuid`. */
export function liveRouter(deps: LiveDeps): Router {
  const heartbeatMs = deps.heartbeatMs ?? 15_000;
  const router = Router();

  router.get("/:uuid/stream", async (req, res) => {
    const uuid = parseOrThrow(messageUuidSchema, req.params.uuid, "uuid");
    let last = "";
    const send = (message: unknown) => {
      const data = JSON.stringify(message);
      if (data === last) return; // a signal without a visible change (e.g. after a LISTEN reconnect)
      last = data;
      res.write(`data: ${data}\n\n`);
    };
    const watch = await watchMessage(
      deps,
      { uuid, team: res.locals.team },
      (message) => send(message),
      () => res.end(),
    );
    if (!res.socket || res.socket.destroyed) return watch.stop(); // the client left during the first read
    res.writeHead(200, {
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-cache, no-transform",
      connection: "keep-alive",
      // nginx and similar proxies would otherwise buffer the stream.
      "x-accel-buffering": "no",
    });
    res.flushHeaders();
    send(watch.first);
    watch.resume();
    const heartbeat = setInterval(() => res.write(": heartbeat\n\n"), heartbeatMs);
    res.on("close", () => {
      clearInterval(heartbeat);
      watch.stop();
    });
  });

  return router;
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
    let timer: NodeJS.Timeout | undefined;
    let answered = false;
    const watch = await watchMessage(
      deps,
      { uuid, team: res.locals.team },
      (message) => {
        latest = message;
        if (reached(message)) done(message);
      },
      () => done(latest),
    );
    if (!res.socket || res.socket.destroyed) return watch.stop();
    let latest = watch.first;
    const startStatus = watch.first.status;
    const reached = (message: typeof latest) =>
      query.waitFor ? hasReached(message.status, query.waitFor) : message.status !== startStatus;
    const done = (message: unknown) => {
      if (answered) return;
      answered = true;
      clearTimeout(timer);
      watch.stop();
      answer(res, message);
    };
    res.on("close", () => {
      answered = true;
      clearTimeout(timer);
      watch.stop();
    });
    if (query.waitFor && reached(latest)) return done(latest);
    timer = setTimeout(() => {
      // At the timeout: the current state, read fresh.
      findMessage(deps.db, uuid, res.locals.team)
        .then((message) => done(message ?? latest))
        .catch(() => done(latest));
    }, query.timeout * 1000);
    watch.resume();
  };
}

function answer(res: Response, message: unknown) {
  if (res.writableEnded || res.destroyed) return;
  res.json(message);
}
