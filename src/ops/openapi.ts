import { Router } from "express";
import { z } from "zod";
import { longPollQuerySchema } from "../live/routes.ts";
import { listMessagesQuerySchema, messageListSchema } from "../messages/list.ts";
import {
  createdMessageSchema,
  idempotencyKeySchema,
  messageSchema,
  messageUuidSchema,
  sendMessageBodySchema,
} from "../messages/schemas.ts";
import { webhookBodySchema } from "../webhooks/parse.ts";

// Answers that have no zod schema in the routes (they are built by hand there), described here once.
const fieldErrorSchema = z.object({ path: z.string(), message: z.string() });

export const problemSchema = z
  .looseObject({
    type: z.string(),
    title: z.string(),
    status: z.int(),
    detail: z.string(),
    code: z.string().meta({ description: "Stable machine-readable reason, e.g. `validation_failed`." }),
    errors: z.array(fieldErrorSchema).optional().meta({ description: "Field paths, for `validation_failed`." }),
    uuid: z.string().optional().meta({ description: "When Betatel accepted but storing failed (503)." }),
  })
  .meta({ id: "Problem", description: "RFC 9457 problem details." });

export const webhookResponseSchema = z
  .object({
    results: z.array(
      z.object({
        uuid: z.string().nullable(),
        status: z.string().nullable(),
        outcome: z.enum(["applied", "duplicate", "stale", "rejected", "buffered", "invalid"]),
        errors: z.array(fieldErrorSchema).optional(),
      }),
    ),
  })
  .meta({ id: "WebhookResponse", description: "One result per status item, in order." });

const healthSchema = z.looseObject({ status: z.string() }).meta({ id: "Health" });

type Json = Record<string, unknown>;

const ref = (id: string) => ({ $ref: `#/components/schemas/${id}` });
const json = (id: string, example?: unknown) => ({
  "application/json": { schema: ref(id), ...(example === undefined ? {} : { example }) },
});
const problem = (description: string) => ({
  description,
  content: { "application/problem+json": { schema: ref("Problem") } },
});

const PROBLEMS = {
  400: problem("`validation_failed` (with `errors` field paths) or `malformed_json`"),
  401: problem("`unauthorized`: missing or wrong credentials"),
  404: problem("`message_not_found`"),
  409: problem("`idempotency_key_in_progress`: the first request with this key has not finished"),
  413: problem("`payload_too_large`"),
  415: problem("`unsupported_media_type`: send application/json"),
  422: problem("`provider_rejected` (Betatel refused the request) or `idempotency_key_reused` (different body)"),
  502: problem("`provider_auth_failed`, `provider_payment_required` or `provider_unavailable`"),
  503: problem("`storage_unavailable`: the database failed (with `uuid` if Betatel had already accepted)"),
  504: problem("`provider_timeout`"),
} as const;
const problems = (...statuses: Array<keyof typeof PROBLEMS>) =>
  Object.fromEntries(statuses.map((status) => [String(status), PROBLEMS[status]]));

/** Components from the zod schemas themselves (`.meta({id})`), as JSON Schema 2020-12 (OpenAPI 3.1's dialect). */
function componentSchemas(): Record<string, Json> {
  const registry = z.registry<{ id: string }>();
  const schemas = {
    SendMessageRequest: sendMessageBodySchema,
    CreatedMessage: createdMessageSchema,
    Message: messageSchema,
    MessageList: messageListSchema,
    WebhookBody: webhookBodySchema,
    WebhookResponse: webhookResponseSchema,
    Problem: problemSchema,
    Health: healthSchema,
  };
  for (const [id, schema] of Object.entries(schemas)) registry.add(schema, { id });
  // Requests are described as callers write them ("input": before normalisation); responses have no transforms.
  const generated = z.toJSONSchema(registry, {
    target: "draft-2020-12",
    io: "input",
    unrepresentable: "any",
    uri: (id) => `#/components/schemas/${id}`,
  }).schemas as Record<string, Json>;
  // Nested schemas with their own id land in a shared "$defs" holder: lift them into components too.
  const shared = ((generated.__shared as Json | undefined)?.$defs ?? {}) as Record<string, Json>;
  const all: Record<string, Json> = {};
  for (const [id, schema] of Object.entries({ ...generated, ...shared })) {
    if (id === "__shared") continue;
    const { $schema: _schema, $id: _id, ...rest } = schema;
    all[id] = rest;
  }
  return JSON.parse(
    JSON.stringify(all).replaceAll("#/components/schemas/__shared#/$defs/", "#/components/schemas/"),
  ) as Record<string, Json>;
}

/** Query parameters, one per field of the route's own zod object schema. */
function queryParameters(schema: z.ZodObject, descriptions: Record<string, string> = {}): Json[] {
  return Object.entries(schema.shape).map(([name, field]) => {
    const { description, ...jsonSchema } = inline(field as z.ZodType);
    return { name, in: "query", required: false, description: descriptions[name] ?? description, schema: jsonSchema };
  });
}

/** Query parameters of `GET /v1/messages`, one per field of the route's own zod schema. */
function listParameters(): Json[] {
  return Object.entries(listMessagesQuerySchema.shape).map(([name, schema]) => {
    const { description, ...jsonSchema } = inline(schema);
    return { name, in: "query", required: false, description, schema: jsonSchema };
  });
}

/** A zod schema as an inline JSON Schema (no `$schema`: the document's dialect applies). */
function inline(schema: z.ZodType): Json {
  const { $schema: _schema, ...rest } = z.toJSONSchema(schema, {
    target: "draft-2020-12",
    io: "input",
    unrepresentable: "any",
  }) as Json;
  return rest;
}

const uuidParameter = { name: "uuid", in: "path", required: true, schema: inline(messageUuidSchema) };

const API_KEY = [{ bearerApiKey: [] }, { headerApiKey: [] }];
const WEBHOOK_SECRET = [{ webhookSecretHeader: [] }, { webhookBearer: [] }, { webhookSecretQuery: [] }];

function getMessage(summary: string): Json {
  return {
    summary,
    tags: ["messages"],
    security: API_KEY,
    parameters: [
      uuidParameter,
      ...queryParameters(longPollQuerySchema, {
        waitFor: "Long-poll: answer as soon as the status reaches or passes this one (or is final). Any letter case.",
        timeout: "Long-poll: seconds to wait (1..60, default 30) before answering with the current state.",
      }),
    ],
    responses: {
      200: { description: "The message with its events, oldest first.", content: json("Message") },
      ...problems(400, 401, 404, 503),
    },
  };
}

/** The OpenAPI 3.1 document of the product API and the webhook (contract sections 3 and 4), plus ops routes. */
export function buildOpenApiDocument(): Json {
  const sendExample = { to: "+387 61 444 555", text: "Your code is 482910" };
  const webhookExample = { uuid: "01JV5V54KPYK9GB29265EQRZ2P", status: "DELIVERED", timestamp: "2026-11-27T10:00:00Z" };
  return {
    openapi: "3.1.0",
    info: {
      title: "whatsapp-otp-tracker",
      version: "1",
      description: "Sends WhatsApp OTPs through Betatel and tracks their delivery status.",
    },
    jsonSchemaDialect: "https://json-schema.org/draft/2020-12/schema",
    tags: [{ name: "messages" }, { name: "webhooks" }, { name: "ops" }],
    paths: {
      "/v1/messages": {
        post: {
          summary: "Send a WhatsApp OTP",
          tags: ["messages"],
          security: API_KEY,
          parameters: [
            {
              name: "Idempotency-Key",
              in: "header",
              required: false,
              description: "Same key and body within 24 h: the first answer again, Betatel is not called twice.",
              schema: inline(idempotencyKeySchema),
            },
          ],
          requestBody: { required: true, content: json("SendMessageRequest", sendExample) },
          responses: {
            201: {
              description: "Betatel accepted; the message is stored as PENDING.",
              headers: { Location: { schema: { type: "string" }, description: "/v1/messages/{uuid}" } },
              content: json("CreatedMessage"),
            },
            ...problems(400, 401, 409, 413, 415, 422, 502, 503, 504),
          },
        },
        get: {
          summary: "List messages, newest first (keyset pagination)",
          tags: ["messages"],
          security: API_KEY,
          parameters: listParameters(),
          responses: { 200: { description: "One page.", content: json("MessageList") }, ...problems(400, 401, 503) },
        },
      },
      "/v1/messages/{uuid}": { get: getMessage("Read one message") },
      "/v1/messages/{uuid}/stream": {
        get: {
          summary: "Live status as Server-Sent Events",
          description:
            "First event: the message as GET returns it; then one event per status change, from whichever instance made it. Heartbeat comments keep the stream open.",
          tags: ["messages"],
          security: API_KEY,
          parameters: [uuidParameter],
          responses: {
            200: {
              description: "`data:` lines, each a JSON Message.",
              content: { "text/event-stream": { schema: { type: "string" }, "x-item-schema": ref("Message") } },
            },
            ...problems(400, 401, 404, 503),
          },
        },
      },
      "/messages/{uuid}": { get: getMessage("Read one message (same as /v1/messages/{uuid})") },
      "/webhooks/betatel": {
        post: {
          summary: "Betatel status updates",
          tags: ["webhooks"],
          security: WEBHOOK_SECRET,
          description:
            "When WEBHOOK_SIGNING_SECRET is set, a Standard Webhooks signature (`webhook-id`, `webhook-timestamp`, `webhook-signature`) is required as well.",
          requestBody: { required: true, content: json("WebhookBody", webhookExample) },
          responses: {
            200: { description: "Stored; one result per item.", content: json("WebhookResponse") },
            ...problems(400, 401, 413, 415, 503),
            403: problem("`forbidden`: WEBHOOK_ALLOWED_IPS is set and the client address is not in it"),
            429: problem(
              "`too_many_buffered`: this sender's statuses for unknown uuids this minute are used up (Retry-After)",
            ),
          },
        },
      },
      "/healthz": {
        get: {
          summary: "The process answers",
          tags: ["ops"],
          responses: { 200: { description: "Up.", content: json("Health") } },
        },
      },
      "/readyz": {
        get: {
          summary: "The database answers",
          tags: ["ops"],
          responses: { 200: { description: "Ready.", content: json("Health") }, ...problems(503) },
        },
      },
      "/metrics": {
        get: {
          summary: "Prometheus metrics",
          tags: ["ops"],
          description: "Open unless METRICS_TOKEN is set; then `Authorization: Bearer <METRICS_TOKEN>`.",
          security: [{}, { metricsToken: [] }],
          responses: {
            200: { description: "Prometheus text format.", content: { "text/plain": { schema: { type: "string" } } } },
            ...problems(401),
          },
        },
      },
      "/openapi.json": {
        get: {
          summary: "This document",
          tags: ["ops"],
          responses: {
            200: { description: "OpenAPI 3.1.", content: { "application/json": { schema: { type: "object" } } } },
          },
        },
      },
    },
    components: {
      schemas: componentSchemas(),
      securitySchemes: {
        bearerApiKey: { type: "http", scheme: "bearer", description: "One of API_KEYS." },
        headerApiKey: { type: "apiKey", in: "header", name: "x-api-key", description: "One of API_KEYS." },
        webhookSecretHeader: { type: "apiKey", in: "header", name: "x-webhook-secret", description: "WEBHOOK_SECRET." },
        webhookBearer: { type: "http", scheme: "bearer", description: "WEBHOOK_SECRET." },
        webhookSecretQuery: { type: "apiKey", in: "query", name: "token", description: "WEBHOOK_SECRET." },
        metricsToken: { type: "http", scheme: "bearer", description: "METRICS_TOKEN, when set." },
      },
    },
  };
}

export function openApiRouter(): Router {
  const router = Router();
  let document: Json | undefined;
  router.get("/openapi.json", (_req, res) => {
    document ??= buildOpenApiDocument();
    res.json(document);
  });
  return router;
}
