import { Router } from "express";
import { withStorage } from "../db/errors.ts";
import { problemBody } from "../http/problem.ts";
import { jsonBody, parseOrThrow } from "../http/validate.ts";
import {
  claimIdempotencyKey,
  releaseIdempotencyKey,
  replayProblem,
  requestFingerprint,
  saveIdempotentAnswer,
} from "../messages/idempotency.ts";
import { MESSAGE_BODY_LIMIT } from "../messages/routes.ts";
import { idempotencyKeySchema } from "../messages/schemas.ts";
import { OtpMayBeOutError } from "../messages/send.ts";
import {
  checkBodySchema,
  checkByNumberBodySchema,
  startVerificationBodySchema,
  verificationIdSchema,
} from "./schemas.ts";
import {
  cancel,
  checkByNumber,
  checkVerification,
  readVerification,
  startVerification,
  type VerificationDeps,
} from "./service.ts";

/** `/v1/verifications`: start (or resend), check, read and cancel, for the caller's team only. */
export function verificationsRouter(deps: VerificationDeps): Router {
  const router = Router();
  const json = jsonBody(MESSAGE_BODY_LIMIT);
  const idParam = (value: unknown) => parseOrThrow(verificationIdSchema, value, "id");

  router.post("/", ...json, async (req, res) => {
    const body = parseOrThrow(startVerificationBodySchema, req.body);
    const rawKey = req.get("idempotency-key");
    const key =
      rawKey === undefined ? undefined : parseOrThrow(idempotencyKeySchema, rawKey, "headers.idempotency-key");
    // Same key and body within 24 h: the first answer again, and no second code goes out.
    const scope = `verifications:${res.locals.team}:${res.locals.apiKeyId}`;
    if (key) {
      const fingerprint = requestFingerprint(body, res.locals.apiKey);
      const claim = await withStorage(() =>
        claimIdempotencyKey(deps.db, scope, key, fingerprint, deps.betatelTimeoutMs + 15_000),
      );
      if (claim.kind === "replay") {
        const { status, body: stored } = claim.answer;
        if (status >= 400) return replayProblem(res, claim.answer);
        if (status === 201) res.location(`/v1/verifications/${(stored as { id: string }).id}`);
        res.status(status).json(stored);
        return;
      }
    }
    let answer: Awaited<ReturnType<typeof startVerification>>;
    try {
      answer = await startVerification(deps, {
        ...body,
        team: res.locals.team,
        apiKeyId: res.locals.apiKeyId,
        apiKey: res.locals.apiKey,
      });
    } catch (error) {
      // The code may be out: the same key replays this answer and never sends a second code. Any other
      // failure kept no verification (its code is void): the same key may try again.
      if (key) {
        await (error instanceof OtpMayBeOutError
          ? saveIdempotentAnswer(deps.db, scope, key, { status: error.status, body: problemBody(error) })
          : releaseIdempotencyKey(deps.db, scope, key)
        ).catch(() => {});
      }
      throw error;
    }
    if (key) await saveIdempotentAnswer(deps.db, scope, key, answer).catch(() => {});
    if (answer.status === 201) res.location(`/v1/verifications/${answer.body.id}`);
    res.status(answer.status).json(answer.body);
  });

  router.post("/check", ...json, async (req, res) => {
    const { to, code } = parseOrThrow(checkByNumberBodySchema, req.body);
    res.json(await checkByNumber(deps, res.locals.team, to, code));
  });

  router.get("/:id", async (req, res) => {
    res.json(await readVerification(deps, res.locals.team, idParam(req.params.id)));
  });

  router.post("/:id/check", ...json, async (req, res) => {
    const id = idParam(req.params.id);
    const { code } = parseOrThrow(checkBodySchema, req.body);
    res.json(await checkVerification(deps, res.locals.team, id, code));
  });

  router.post("/:id/cancel", async (req, res) => {
    res.json(await cancel(deps, res.locals.team, idParam(req.params.id)));
  });

  return router;
}
