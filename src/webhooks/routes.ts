import express, { Router } from "express";
import type { Database } from "../db/database.ts";
import { withStorage } from "../db/errors.ts";
import { AppError, type FieldError, storageUnavailable, validationFailed } from "../http/problem.ts";
import { requireJsonBody } from "../http/validate.ts";
import { type AppliedOutcome, applyStatusEvents, isTransientConflict, type StatusEvent } from "./apply.ts";
import { checkWebhookSecret, checkWebhookSignature } from "./auth.ts";
import { bodyShape, MAX_ITEMS, parseItem } from "./parse.ts";
import type { Outcome } from "./state-machine.ts";

export const WEBHOOK_BODY_LIMIT = 1024 * 1024;

export interface WebhookDeps {
  db: Database;
  secret: string | undefined;
  signingSecret: string | undefined;
  /** Called after events are stored, with the results and the uuids whose buffered statuses were settled. */
  onApplied?: (results: WebhookResult[], settled: Set<string>) => void;
}

export interface WebhookResult {
  uuid: string | null;
  status: string | null;
  outcome: Outcome;
  errors?: FieldError[];
}

const tooLarge = (detail: string) => new AppError(413, "payload_too_large", "Payload too large", detail);

/** `POST /webhooks/betatel`: Betatel's status updates. */
export function webhookRouter(deps: WebhookDeps): Router {
  const checkSecret = checkWebhookSecret(deps.secret);
  const checkSignature = checkWebhookSignature(deps.signingSecret);
  const router = Router();

  router.post(
    "/betatel",
    (req, _res, next) => {
      checkSecret(req);
      next();
    },
    requireJsonBody,
    // Raw bytes: the signature is computed over them, so JSON is parsed only after it is checked.
    express.raw({ type: () => true, limit: WEBHOOK_BODY_LIMIT }),
    async (req, res) => {
      const raw: Buffer = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
      checkSignature(req, raw);
      let body: unknown;
      try {
        body = JSON.parse(raw.toString("utf8"));
      } catch {
        throw new AppError(400, "malformed_json", "Malformed JSON", "The request body is not valid JSON.");
      }
      const shape = bodyShape(body);
      if (!shape) {
        throw validationFailed(
          [{ path: "(body)", message: "expected a status object, an array of them, or {statuses: [...]}" }],
          "The body is not an accepted shape.",
        );
      }
      const items = shape.kind === "single" ? [shape.item] : shape.items;
      if (items.length > MAX_ITEMS) throw tooLarge(`At most ${MAX_ITEMS} statuses per request.`);

      const parsed = items.map((item) => parseItem(item, "webhook"));
      if (shape.kind === "single" && !parsed[0]?.ok) {
        throw validationFailed((parsed[0] as { errors: FieldError[] }).errors);
      }
      const events = parsed.flatMap((item) => (item.ok ? [item.event] : []));
      const settled = new Set<string>();
      const apply = () => applyStatusEvents(deps.db.pool, events, settled);
      const outcomes = await withStorage(apply).catch((error: unknown) => {
        // Still conflicting after the retries: nothing was lost, so ask the sender to retry rather than 500.
        throw isTransientConflict(error) ? storageUnavailable() : error;
      });

      let next = 0;
      const results: WebhookResult[] = parsed.map((item, index) => {
        if (item.ok) {
          const { uuid, status } = item.event as StatusEvent;
          return { uuid, status, outcome: outcomes[next++] as AppliedOutcome };
        }
        const prefix = `${shape.kind === "batch" ? shape.path : ""}${index}`;
        return {
          uuid: item.uuid ?? null,
          status: item.status ?? null,
          outcome: "invalid",
          errors: item.errors.map((error) => ({ ...error, path: `${prefix}.${error.path}` })),
        };
      });
      deps.onApplied?.(results, settled);
      res.json({ results });
    },
  );

  return router;
}
