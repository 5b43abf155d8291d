import { Router } from "express";
import type pg from "pg";
import { z } from "zod";
import { withStorage } from "../db/errors.ts";
import { notFound } from "../http/problem.ts";
import { parseOrThrow } from "../http/validate.ts";
import { messageSummarySchema } from "../messages/schemas.ts";
import { DELIVERY_STATUSES, listDeliveries, retryDelivery } from "./repository.ts";

export const deliveryIdSchema = z.string().regex(/^[1-9][0-9]{0,17}$/, "is not a delivery id");

export const listDeliveriesQuerySchema = z.strictObject({
  status: z.enum(DELIVERY_STATUSES).optional(),
  limit: z.coerce.number().int().min(1).max(200).default(50),
  cursor: deliveryIdSchema.optional().meta({ description: "Opaque: the `nextCursor` of the previous page." }),
});

export const deliverySchema = z
  .object({
    id: z.string(),
    eventId: z.string().meta({ description: "The `webhook-id` header: the same on every attempt." }),
    endpointId: z.string(),
    type: z.enum(["message.status", "verification.status"]),
    subject: z.string().meta({ description: "The message uuid (or verification id) the event is about." }),
    sequence: z.int(),
    status: z.enum(DELIVERY_STATUSES),
    attempts: z.int(),
    nextAttemptAt: z.string().nullable(),
    lastAttemptAt: z.string().nullable(),
    lastStatusCode: z.int().nullable(),
    lastError: z.string().nullable(),
    lastResponse: z.string().nullable().meta({ description: "At most 1 KiB of the receiver's last answer." }),
    createdAt: z.string(),
    deliveredAt: z.string().nullable(),
  })
  .meta({ id: "CallbackDelivery" });

export const deliveryListSchema = z
  .object({ items: z.array(deliverySchema), nextCursor: z.string().nullable() })
  .meta({ id: "CallbackDeliveryList" });

/** The body of a `message.status` callback (documented in OpenAPI's `webhooks`). */
export const messageStatusEventSchema = z
  .object({
    type: z.literal("message.status"),
    timestamp: z.string().meta({ description: "When the change was committed." }),
    data: messageSummarySchema.extend({
      team: z.string(),
      sequence: z.int().meta({ description: "Status changes of this message so far (PENDING is 1)." }),
    }),
  })
  .meta({ id: "MessageStatusEvent" });

/** `GET /v1/callbacks/deliveries` and `POST /v1/callbacks/deliveries/:id/retry`, for the caller's team only. */
export function callbacksRouter(pool: pg.Pool): Router {
  const router = Router();

  router.get("/deliveries", async (req, res) => {
    const query = parseOrThrow(listDeliveriesQuerySchema, req.query, "query");
    const items = await withStorage(() =>
      listDeliveries(pool, { team: res.locals.team, status: query.status, before: query.cursor, limit: query.limit }),
    );
    const last = items.at(-1);
    res.json({ items, nextCursor: items.length === query.limit && last ? last.id : null });
  });

  router.post("/deliveries/:id/retry", async (req, res) => {
    const id = parseOrThrow(deliveryIdSchema, req.params.id, "id");
    const delivery = await withStorage(() => retryDelivery(pool, res.locals.team, id));
    if (!delivery) throw notFound(`No callback delivery with id ${id}.`, "delivery_not_found");
    res.status(202).json(delivery);
  });

  return router;
}
