import { type RequestHandler, Router } from "express";
import type { Database } from "../db/database.ts";
import { withStorage } from "../db/errors.ts";
import { notFound } from "../http/problem.ts";
import { jsonBody, parseOrThrow } from "../http/validate.ts";
import { replayProblem } from "./idempotency.ts";
import { findMessage } from "./repository.ts";
import { idempotencyKeySchema, messageUuidSchema, sendMessageBodySchema } from "./schemas.ts";
import { type SendDeps, sendMessage } from "./send.ts";

export const MESSAGE_BODY_LIMIT = "64kb";

export interface MessagesRouterDeps extends SendDeps {
  /** The message's `watchUrl` (a stream URL a browser may open without an API key). */
  watchUrl: (uuid: string) => string;
}

/** `POST /v1/messages`. */
export function messagesRouter(deps: MessagesRouterDeps): Router {
  const router = Router();

  router.post("/", ...jsonBody(MESSAGE_BODY_LIMIT), async (req, res) => {
    const body = parseOrThrow(sendMessageBodySchema, req.body);
    const rawKey = req.get("idempotency-key");
    const idempotencyKey =
      rawKey === undefined ? undefined : parseOrThrow(idempotencyKeySchema, rawKey, "headers.idempotency-key");
    const answer = await sendMessage(deps, {
      body,
      idempotencyKey,
      apiKeyId: res.locals.apiKeyId,
      apiKey: res.locals.apiKey,
      team: res.locals.team,
    });
    // A failure here is a replay (a fresh one is thrown): answered as it was the first time.
    if (answer.status >= 400) return replayProblem(res, answer);
    const { uuid } = answer.body as { uuid: string };
    // Not part of the stored answer: a replay gets a fresh token too.
    res
      .status(answer.status)
      .location(`/v1/messages/${encodeURIComponent(uuid)}`)
      .json({ ...(answer.body as object), watchUrl: deps.watchUrl(uuid) });
  });

  return router;
}

/** `GET .../:uuid`: one message with its events (mounted at `/v1/messages/:uuid` and `/messages/:uuid`). */
export function getMessage(db: Database, watchUrl: (uuid: string) => string): RequestHandler<{ uuid: string }> {
  return async (req, res) => {
    const uuid = parseOrThrow(messageUuidSchema, req.params.uuid, "uuid");
    const message = await withStorage(() => findMessage(db, uuid, res.locals.team));
    if (!message) throw notFound(`No message with uuid ${uuid}.`, "message_not_found");
    res.json({ ...message, watchUrl: watchUrl(uuid) });
  };
}
