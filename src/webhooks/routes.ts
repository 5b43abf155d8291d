import { isUtf8 } from "node:buffer";
import express, { type RequestHandler, Router } from "express";
import type { Database } from "../db/database.ts";
import { withStorage } from "../db/errors.ts";
import {
  type FieldError,
  malformedJson,
  payloadTooLarge,
  storageUnavailable,
  validationFailed,
} from "../http/problem.ts";
import { requireJsonBody } from "../http/validate.ts";
import { type AppliedOutcome, applyStatusEvents, isTransientConflict, type StatusEvent } from "../tracking/apply.ts";
import type { Outcome } from "../tracking/state-machine.ts";
import { checkWebhookSecret, checkWebhookSignature } from "./auth.ts";
import { bodyShape, MAX_ITEMS, parseItem } from "./parse.ts";
import { anyUnknownMessage } from "./repository.ts";
import { bufferedBudget, checkWebhookClient } from "./sender-limits.ts";

export const WEBHOOK_BODY_LIMIT = 1024 * 1024;

export interface WebhookDeps {
  db: Database;
  /** Logs the request (its one line per request); runs first on the route. */
  requestLog?: RequestHandler;
  secret: string | undefined;
  signingSecret: string | undefined;
  /** Client addresses (CIDRs) allowed to call the webhook; unset or empty allows any. */
  allowedIps?: readonly string[];
  /** Buffered rows one sender may create per minute (0: no limit). */
  bufferedPerMinute?: number;
  /**
   * Called after events are stored, with the results and the uuids whose earlier buffered statuses were settled
   * (their rows changed although their results here may say `duplicate`).
   */
  onApplied?: (results: WebhookResult[], settled: string[]) => void;
}

export interface WebhookResult {
  uuid: string | null;
  status: string | null;
  outcome: Outcome;
  errors?: FieldError[];
}

/** `POST /webhooks/betatel`: Betatel's status updates. */
export function webhookRouter(deps: WebhookDeps): Router {
  const checkSecret = checkWebhookSecret(deps.secret);
  const checkSignature = checkWebhookSignature(deps.signingSecret);
  const checkClient = checkWebhookClient(deps.allowedIps);
  const budget = bufferedBudget(deps.bufferedPerMinute ?? 0);
  const router = Router();

  router.post(
    "/betatel",
    deps.requestLog ?? ((_req, _res, next) => next()),
    (req, _res, next) => {
      checkClient(req);
      checkSecret(req);
      next();
    },
    requireJsonBody,
    // Raw bytes: the signature is computed over them, so JSON is parsed only after it is checked.
    express.raw({ type: () => true, limit: WEBHOOK_BODY_LIMIT }),
    async (req, res) => {
      const raw: Buffer = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
      checkSignature(req, raw);
      // Bytes that are not UTF-8 would be decoded as U+FFFD: refused as not JSON rather than stored changed.
      if (!isUtf8(raw)) throw malformedJson();
      let body: unknown;
      try {
        body = JSON.parse(raw.toString("utf8"));
      } catch {
        throw malformedJson();
      }
      const shape = bodyShape(body);
      if (!shape) {
        throw validationFailed(
          [{ path: "(body)", message: "expected a status object, an array of them, or {statuses: [...]}" }],
          "The body is not an accepted shape.",
        );
      }
      const items = shape.kind === "single" ? [shape.item] : shape.items;
      if (items.length > MAX_ITEMS) throw payloadTooLarge(`At most ${MAX_ITEMS} statuses per request.`);

      const parsed = items.map((item) => parseItem(item, "webhook"));
      if (shape.kind === "single" && !parsed[0]?.ok) {
        throw validationFailed((parsed[0] as { errors: FieldError[] }).errors);
      }
      const events = parsed.flatMap((item) => (item.ok ? [item.event] : []));
      const sender = req.ip ?? "unknown";
      if (budget.exhausted(sender) && (await withStorage(() => anyUnknownMessage(deps.db, events))))
        throw budget.refusal();
      const { outcomes, settled } = await withStorage(() => applyStatusEvents(deps.db.pool, events)).catch(
        (error: unknown) => {
          // Still conflicting after the retries: nothing was lost, so ask the sender to retry rather than 500.
          throw isTransientConflict(error) ? storageUnavailable() : error;
        },
      );
      budget.spend(sender, outcomes.filter((outcome) => outcome === "buffered").length);

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
          // An item that is wrong as a whole ("(body)" on its own) is named by its index alone.
          errors: item.errors.map((error) => ({
            ...error,
            path: error.path === "(body)" ? prefix : `${prefix}.${error.path}`,
          })),
        };
      });
      deps.onApplied?.(results, settled);
      // Not res.json: no ETag (a hash of every answer) for a sender that never revalidates.
      res.status(200).type("application/json").end(JSON.stringify({ results }));
    },
  );

  return router;
}
