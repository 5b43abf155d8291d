import { type RequestHandler, Router } from "express";
import { z } from "zod";
import {
  deliveryIdSchema,
  deliveryListSchema,
  deliverySchema,
  listDeliveriesQuerySchema,
  messageStatusEventSchema,
} from "../callbacks/routes.ts";
import { AppError } from "../http/problem.ts";
import { PROBLEMS, type ProblemCode } from "../http/problems.ts";
import { longPollQuerySchema } from "../live/routes.ts";
import { listMessagesQuerySchema, messageListSchema } from "../messages/list.ts";
import {
  createdMessageSchema,
  idempotencyKeySchema,
  messageSchema,
  messageUuidSchema,
  sendMessageBodySchema,
} from "../messages/schemas.ts";
import {
  checkBodySchema,
  checkByNumberBodySchema,
  startVerificationBodySchema,
  verificationIdSchema,
  verificationSchema,
} from "../verifications/schemas.ts";
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
const problemAnswer = (description: string) => ({
  description,
  content: { "application/problem+json": { schema: ref("Problem") } },
});

const described = (code: ProblemCode) => `\`${code}\`: ${PROBLEMS[code].description}`;

/** An operation's problem answers from the codes it can give: one answer per status, describing each code. */
function problems(...codes: ProblemCode[]): Record<string, Json> {
  const byStatus = new Map<number, ProblemCode[]>();
  for (const code of codes) {
    const status = PROBLEMS[code].status;
    byStatus.set(status, [...(byStatus.get(status) ?? []), code]);
  }
  return Object.fromEntries(
    [...byStatus].map(([status, list]) => [String(status), problemAnswer(list.map(described).join(" · "))]),
  );
}

// The codes operations share.
const API_KEY_CODES = ["unauthorized"] as const;
const WATCH_CODES = ["unauthorized", "watch_token_invalid", "watch_token_expired"] as const;
const JSON_BODY_CODES = ["validation_failed", "malformed_json", "payload_too_large", "unsupported_media_type"] as const;
const PROVIDER_CODES = [
  "provider_rejected",
  "provider_auth_failed",
  "provider_payment_required",
  "provider_unavailable",
  "provider_timeout",
] as const;
const SEND_CODES = [
  ...JSON_BODY_CODES,
  ...API_KEY_CODES,
  ...PROVIDER_CODES,
  "idempotency_key_in_progress",
  "idempotency_key_reused",
  "country_not_allowed",
  "rate_limited",
  "recipient_rate_limited",
  "storage_unavailable",
] as const;

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
    CallbackDelivery: deliverySchema,
    CallbackDeliveryList: deliveryListSchema,
    MessageStatusEvent: messageStatusEventSchema,
    StartVerificationRequest: startVerificationBodySchema,
    CheckVerificationRequest: checkBodySchema,
    CheckVerificationByNumberRequest: checkByNumberBodySchema,
    Verification: verificationSchema,
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

/**
 * Query parameters, one per field of the route's own zod object schema. A parameter is described by the
 * value the route reads (`limit` an integer, not the string it arrives as), unless that value is an internal
 * object (a decoded cursor): then by what the caller writes.
 */
function queryParameters(schema: z.ZodObject, descriptions: Record<string, string> = {}): Json[] {
  return Object.entries(schema.shape).map(([name, field]) => {
    const read = inline(field as z.ZodType, "output");
    const { description, ...jsonSchema } = typeof read.type === "string" ? read : inline(field as z.ZodType);
    return { name, in: "query", required: false, description: descriptions[name] ?? description, schema: jsonSchema };
  });
}

/** A zod schema as an inline JSON Schema (no `$schema`: the document's dialect applies). */
function inline(schema: z.ZodType, io: "input" | "output" = "input"): Json {
  const { $schema: _schema, ...rest } = z.toJSONSchema(schema, {
    target: "draft-2020-12",
    io,
    unrepresentable: "any",
  }) as Json;
  return rest;
}

const uuidParameter = { name: "uuid", in: "path", required: true, schema: inline(messageUuidSchema) };

const idempotencyKeyParameter = {
  name: "Idempotency-Key",
  in: "header",
  required: false,
  description: "Same key and body within 24 h: the first answer again, Betatel is not called twice.",
  schema: inline(idempotencyKeySchema),
};

const verificationIdParameter = { name: "id", in: "path", required: true, schema: inline(verificationIdSchema) };

const API_KEY = [{ bearerApiKey: [] }, { headerApiKey: [] }];
const API_KEY_OR_WATCH_TOKEN = [...API_KEY, { watchToken: [] }];
const watchParameter = {
  name: "watch",
  in: "query",
  required: false,
  description:
    "The watch token of the message's `watchUrl`, instead of an API key (for browsers). It reads this message's stream and long-poll only, for 15 minutes. Cross-origin requests are answered for the origins in CORS_ORIGINS.",
  schema: { type: "string" },
};
const WEBHOOK_SECRET = [{ webhookSecretHeader: [] }, { webhookBearer: [] }, { webhookSecretQuery: [] }];

/** `GET` of one message; on `/v1` its long-poll also takes a watch token. */
function getMessage(operationId: string, summary: string, watchable: boolean): Json {
  return {
    operationId,
    summary,
    tags: ["messages"],
    ...(watchable
      ? {
          description:
            "With a `watch` token (from `watchUrl`) only the long-poll is allowed (`waitFor` or `timeout`); the plain read needs an API key.",
        }
      : {}),
    security: watchable ? API_KEY_OR_WATCH_TOKEN : API_KEY,
    parameters: [
      uuidParameter,
      ...queryParameters(longPollQuerySchema, {
        waitFor: "Long-poll: answer as soon as the status reaches or passes this one (or is final). Any letter case.",
        timeout: "Long-poll: seconds to wait (1..60, default 30) before answering with the current state.",
      }),
      ...(watchable ? [watchParameter] : []),
    ],
    responses: {
      200: { description: "The message with its events, oldest first.", content: json("Message") },
      ...problems(
        "validation_failed",
        ...(watchable ? WATCH_CODES : API_KEY_CODES),
        "message_not_found",
        "too_many_watchers",
        "storage_unavailable",
      ),
    },
  };
}

const RETRY_AFTER = {
  "Retry-After": { description: "Seconds to wait before trying again.", schema: { type: "integer", minimum: 0 } },
};
const RATE_LIMIT_HEADERS = {
  RateLimit: { description: "The key's remaining requests in this window (IETF draft 7).", schema: { type: "string" } },
  "RateLimit-Policy": { description: "The limit and its window.", schema: { type: "string" } },
};

/**
 * Answers every operation can give: 408 when a request is not received in time, 500 for a failure of ours;
 * and the headers that tell a client when to retry (`Retry-After` on 429 and 503, `RateLimit` on 429).
 */
function withCommonAnswers(paths: Record<string, Record<string, Json>>) {
  for (const operations of Object.values(paths)) {
    for (const operation of Object.values(operations)) {
      const responses = operation.responses as Record<string, Json>;
      responses["408"] ??= problemAnswer("The request was not received in time (the connection is closed).");
      responses["500"] ??= problemAnswer(described("internal_error"));
      for (const status of ["429", "503"]) {
        const response = responses[status];
        if (response) {
          response.headers = { ...RETRY_AFTER, ...(status === "429" ? RATE_LIMIT_HEADERS : {}) };
        }
      }
    }
  }
  return paths;
}

/** The answers of both ways to check a verification code (by its id, or by the number). */
const checkResponses = (): Json => ({
  200: {
    description: "Approved, or pending with one check fewer (or max_attempts_reached).",
    content: json("Verification"),
  },
  ...problems(
    ...JSON_BODY_CODES,
    ...API_KEY_CODES,
    "verification_not_found",
    "verification_closed",
    "storage_unavailable",
  ),
});

/** The OpenAPI 3.1 document of the product API, verifications, callbacks and the webhook, plus ops routes. */
export function buildOpenApiDocument(): Json {
  const sendExample = {
    to: "+387 61 444 555",
    text: "Your code is 482910",
    reference: "user:4411",
    metadata: { flow: "signup", attempt: 1 },
  };
  const webhookExample = { uuid: "01JV5V54KPYK9GB29265EQRZ2P", status: "DELIVERED", timestamp: "2026-11-27T10:00:00Z" };
  return {
    openapi: "3.1.0",
    info: {
      title: "whatsapp-otp-tracker",
      version: "1",
      description: "Sends WhatsApp OTPs through Betatel and tracks their delivery status.",
      license: { name: "Proprietary", identifier: "LicenseRef-Proprietary" },
    },
    servers: [{ url: "/", description: "The service that serves this document" }],
    jsonSchemaDialect: "https://json-schema.org/draft/2020-12/schema",
    tags: [
      { name: "messages", description: "Send OTPs and read their delivery status." },
      { name: "verifications", description: "Send a generated code and check it, with delivery tracking." },
      { name: "callbacks", description: "Status changes pushed to the team's endpoints." },
      { name: "webhooks", description: "Betatel's status updates." },
      { name: "ops", description: "Health, metrics and this document." },
    ],
    paths: withCommonAnswers({
      "/v1/messages": {
        post: {
          operationId: "sendMessage",
          summary: "Send a WhatsApp OTP",
          tags: ["messages"],
          security: API_KEY,
          parameters: [idempotencyKeyParameter],
          requestBody: { required: true, content: json("SendMessageRequest", sendExample) },
          responses: {
            201: {
              description: "Betatel accepted; the message is stored as PENDING.",
              headers: { Location: { schema: { type: "string" }, description: "/v1/messages/{uuid}" } },
              content: json("CreatedMessage"),
            },
            ...problems(...SEND_CODES, "shutting_down"),
          },
        },
        get: {
          operationId: "listMessages",
          summary: "List the caller's team's messages, newest first (keyset pagination)",
          tags: ["messages"],
          security: API_KEY,
          parameters: queryParameters(listMessagesQuerySchema),
          responses: {
            200: { description: "One page.", content: json("MessageList") },
            ...problems("validation_failed", ...API_KEY_CODES, "storage_unavailable"),
          },
        },
      },
      "/v1/messages/{uuid}": { get: getMessage("getMessage", "Read one message", true) },
      "/v1/messages/{uuid}/stream": {
        get: {
          operationId: "streamMessage",
          summary: "Live status as Server-Sent Events",
          description:
            "Starts with `retry:`; first event: the message as GET returns it; then one event per status change, from whichever instance made it. Each event's `id:` grows with every change of the message; a reconnect with `Last-Event-ID` gets the current state at once only if it changed since. Heartbeat comments keep the stream open. Over the watcher caps: 429 `too_many_watchers`; while the instance stops: 503 `shutting_down`; database unavailable: 503 `storage_unavailable`. With a `watch` token those two are a 200 stream of `retry:` and a comment, then its end (an EventSource gives up on any non-200). A browser opens it with the `watchUrl` (a `watch` token instead of an API key).",
          tags: ["messages"],
          security: API_KEY_OR_WATCH_TOKEN,
          parameters: [uuidParameter, watchParameter],
          responses: {
            200: {
              description: "`data:` lines, each a JSON Message.",
              content: { "text/event-stream": { schema: { type: "string" }, "x-item-schema": ref("Message") } },
            },
            ...problems(
              "validation_failed",
              ...WATCH_CODES,
              "message_not_found",
              "too_many_watchers",
              "storage_unavailable",
              "shutting_down",
            ),
          },
        },
      },
      "/messages/{uuid}": {
        get: getMessage("getMessageByShortPath", "Read one message (same as /v1/messages/{uuid})", false),
      },
      "/v1/verifications": {
        post: {
          operationId: "startVerification",
          summary: "Start a verification (send a code), or resend the pending one's code",
          tags: ["verifications"],
          security: API_KEY,
          parameters: [idempotencyKeyParameter],
          requestBody: { required: true, content: json("StartVerificationRequest", { to: "+387 61 444 555" }) },
          responses: {
            201: { description: "Started: the code was sent.", content: json("Verification") },
            200: {
              description: "The number's pending verification: its code was sent again.",
              content: json("Verification"),
            },
            ...problems(...SEND_CODES, "verification_busy", "resend_too_soon", "max_sends_reached", "shutting_down"),
          },
        },
      },
      "/v1/verifications/check": {
        post: {
          operationId: "checkVerificationByNumber",
          summary: "Check a code against the number's pending verification",
          tags: ["verifications"],
          security: API_KEY,
          requestBody: {
            required: true,
            content: json("CheckVerificationByNumberRequest", { to: "+387 61 444 555", code: "482910" }),
          },
          responses: checkResponses(),
        },
      },
      "/v1/verifications/{id}": {
        get: {
          operationId: "getVerification",
          summary: "Read a verification with the delivery status of its messages",
          tags: ["verifications"],
          security: API_KEY,
          parameters: [verificationIdParameter],
          responses: {
            200: { description: "The verification.", content: json("Verification") },
            ...problems("validation_failed", ...API_KEY_CODES, "verification_not_found", "storage_unavailable"),
          },
        },
      },
      "/v1/verifications/{id}/check": {
        post: {
          operationId: "checkVerification",
          summary: "Check a code",
          tags: ["verifications"],
          security: API_KEY,
          parameters: [verificationIdParameter],
          requestBody: { required: true, content: json("CheckVerificationRequest", { code: "482910" }) },
          responses: checkResponses(),
        },
      },
      "/v1/verifications/{id}/cancel": {
        post: {
          operationId: "cancelVerification",
          summary: "Cancel a pending verification",
          tags: ["verifications"],
          security: API_KEY,
          parameters: [verificationIdParameter],
          responses: {
            200: { description: "Canceled.", content: json("Verification") },
            ...problems(
              "validation_failed",
              ...API_KEY_CODES,
              "verification_not_found",
              "verification_closed",
              "storage_unavailable",
            ),
          },
        },
      },
      "/v1/callbacks/deliveries": {
        get: {
          operationId: "listCallbackDeliveries",
          summary: "The team's status callback deliveries, newest first",
          tags: ["callbacks"],
          security: API_KEY,
          parameters: queryParameters(listDeliveriesQuerySchema, {
            status: "Only deliveries in this state.",
            limit: "Page size, 1..200 (default 50).",
          }),
          responses: {
            200: { description: "One page.", content: json("CallbackDeliveryList") },
            ...problems("validation_failed", ...API_KEY_CODES, "storage_unavailable"),
          },
        },
      },
      "/v1/callbacks/deliveries/{id}/retry": {
        post: {
          operationId: "retryCallbackDelivery",
          summary: "Send a delivery again now, with a fresh retry schedule (same webhook-id)",
          tags: ["callbacks"],
          security: API_KEY,
          parameters: [{ name: "id", in: "path", required: true, schema: inline(deliveryIdSchema) }],
          responses: {
            202: { description: "Pending again.", content: json("CallbackDelivery") },
            ...problems("validation_failed", ...API_KEY_CODES, "delivery_not_found", "storage_unavailable"),
          },
        },
      },
      "/webhooks/betatel": {
        post: {
          operationId: "receiveBetatelStatuses",
          summary: "Betatel status updates",
          tags: ["webhooks"],
          security: WEBHOOK_SECRET,
          description:
            "When WEBHOOK_SIGNING_SECRET is set, a Standard Webhooks signature (`webhook-id`, `webhook-timestamp`, `webhook-signature`) is required as well.",
          parameters: ["webhook-id", "webhook-timestamp", "webhook-signature"].map((name) => ({
            name,
            in: "header",
            required: false,
            description: "Standard Webhooks header; required when WEBHOOK_SIGNING_SECRET is set.",
            schema: { type: "string" },
          })),
          requestBody: { required: true, content: json("WebhookBody", webhookExample) },
          responses: {
            200: { description: "Stored; one result per item.", content: json("WebhookResponse") },
            ...problems(...JSON_BODY_CODES, ...API_KEY_CODES, "forbidden", "too_many_buffered", "storage_unavailable"),
          },
        },
      },
      "/healthz": {
        get: {
          operationId: "checkLiveness",
          security: [],
          summary: "The process answers",
          tags: ["ops"],
          responses: { 200: { description: "Up.", content: json("Health") } },
        },
      },
      "/readyz": {
        get: {
          operationId: "checkReadiness",
          security: [],
          summary: "The database serves the service's own read and accepts writes, within 2 s",
          tags: ["ops"],
          responses: { 200: { description: "Ready.", content: json("Health") }, ...problems("storage_unavailable") },
        },
      },
      "/metrics": {
        get: {
          operationId: "getMetrics",
          summary: "Prometheus metrics",
          tags: ["ops"],
          description: "Open unless METRICS_TOKEN is set; then `Authorization: Bearer <METRICS_TOKEN>`.",
          security: [{}, { metricsToken: [] }],
          responses: {
            200: { description: "Prometheus text format.", content: { "text/plain": { schema: { type: "string" } } } },
            ...problems("unauthorized"),
          },
        },
      },
      "/openapi.json": {
        get: {
          operationId: "getOpenApiDocument",
          security: [],
          summary: "This document",
          tags: ["ops"],
          responses: {
            200: { description: "OpenAPI 3.1.", content: { "application/json": { schema: { type: "object" } } } },
          },
        },
      },
    }),
    // Status callbacks the service POSTs to a team's registered endpoints.
    webhooks: {
      "message.status": {
        post: {
          operationId: "messageStatusCallback",
          security: [],
          summary: "A message's status changed",
          description:
            "Signed with Standard Webhooks using the endpoint's secret. `webhook-id` is the same on every retry; any 2xx within 15 s acknowledges it.",
          tags: ["callbacks"],
          parameters: ["webhook-id", "webhook-timestamp", "webhook-signature"].map((name) => ({
            name,
            in: "header",
            required: true,
            schema: { type: "string" },
          })),
          requestBody: { required: true, content: json("MessageStatusEvent") },
          responses: { 200: { description: "Any 2xx: delivered." } },
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
        watchToken: {
          type: "apiKey",
          in: "query",
          name: "watch",
          description: "The token of a message's `watchUrl`: reads that message's stream and long-poll for 15 minutes.",
        },
      },
    },
  };
}

/**
 * A documented path called with a method it does not have: 405 with `Allow` (GET also allows HEAD), instead
 * of a 404 that would suggest the path is wrong. Mounted after every route.
 */
export function methodNotAllowedHandler(): RequestHandler {
  const routes = Object.entries(buildOpenApiDocument().paths as Record<string, Json>).map(([path, operations]) => {
    const methods = Object.keys(operations).map((method) => method.toUpperCase());
    if (methods.includes("GET")) methods.push("HEAD");
    const pattern = new RegExp(`^${path.replace(/\{[^}]+\}/g, "[^/]+").replaceAll(".", "\\.")}/?$`, "i");
    return { pattern, allow: methods.join(", ") };
  });
  return (req, _res, next) => {
    const route = routes.find((candidate) => candidate.pattern.test(req.path));
    if (!route) return next();
    next(
      new AppError({
        code: "method_not_allowed",
        detail: `${req.method} is not served here; use ${route.allow}.`,
        headers: { Allow: route.allow },
      }),
    );
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
