import express, { Router } from "express";
import { parseOrThrow, requireJsonBody } from "../http/validate.ts";
import { MESSAGE_BODY_LIMIT } from "../messages/routes.ts";
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
  const json = [requireJsonBody, express.json({ limit: MESSAGE_BODY_LIMIT, strict: true })];
  const idParam = (value: unknown) => parseOrThrow(verificationIdSchema, value, "id");

  router.post("/", ...json, async (req, res) => {
    const { to } = parseOrThrow(startVerificationBodySchema, req.body);
    const { status, body } = await startVerification(deps, {
      team: res.locals.team,
      to,
      apiKeyId: res.locals.apiKeyId,
      apiKey: res.locals.apiKey,
    });
    if (status === 201) res.location(`/v1/verifications/${body.id}`);
    res.status(status).json(body);
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
