import { z } from "zod";
import { type FieldError, fieldErrors } from "../http/problem.ts";
import { messageUuidSchema, statusSchema } from "../messages/schemas.ts";
import { errorReason, type StatusEvent } from "../tracking/apply.ts";
import { eventTimeMillis } from "../tracking/event-time.ts";
import { STATUSES, type Status } from "../tracking/status.ts";

export const MAX_ITEMS = 1000;

const timestampSchema = z.union([z.number(), z.string().max(64)]).transform((value, ctx) => {
  const millis = eventTimeMillis(value);
  if (typeof millis === "string") {
    ctx.addIssue({ code: "custom", message: millis });
    return z.NEVER;
  }
  return new Date(Math.round(millis));
});

const shortText = z.string().max(1000);

const ANY_CASE_STATUS = `^(${STATUSES.map((status) =>
  [...status].map((letter) => `[${letter}${letter.toLowerCase()}]`).join(""),
).join("|")})$`;

/** One status object of the webhook. Unknown fields are allowed and kept in the raw payload. */
export const statusItemSchema = z
  .looseObject({
    uuid: messageUuidSchema,
    status: z
      .string()
      .max(32)
      // For the OpenAPI document: the six statuses in any letter case (JSON Schema patterns have no case flag).
      .meta({
        pattern: ANY_CASE_STATUS,
        description: "PENDING, SENT, DELIVERED, READ, FAILED or EXPIRED, any letter case.",
      })
      .transform((value) => value.toUpperCase())
      .pipe(statusSchema),
    timestamp: timestampSchema.optional().nullable(),
    error: z
      .union([
        shortText,
        z.looseObject({
          code: z.union([shortText, z.number()]).optional(),
          message: shortText.optional(),
          title: shortText.optional(),
        }),
      ])
      .optional()
      .nullable(),
    wam_id: z.string().max(255).optional().nullable(),
    to: z.string().max(64).optional().nullable(),
  })
  .meta({ id: "StatusUpdate" });

export const webhookBodySchema = z
  .union([statusItemSchema, z.array(statusItemSchema), z.object({ statuses: z.array(statusItemSchema) })])
  .meta({ id: "WebhookBody", description: "One status object, an array of them, or {statuses: [...]}" });

export type ParsedItem =
  | { ok: true; event: StatusEvent }
  | { ok: false; errors: FieldError[]; uuid?: string; status?: string };

export type Shape = { kind: "single"; item: unknown } | { kind: "batch"; items: unknown[]; path: string };

/** Which accepted shape the body has, or undefined. Items are validated one by one afterwards. */
export function bodyShape(body: unknown): Shape | undefined {
  if (Array.isArray(body)) return { kind: "batch", items: body, path: "" };
  if (body && typeof body === "object") {
    const statuses = (body as { statuses?: unknown }).statuses;
    if (Array.isArray(statuses)) return { kind: "batch", items: statuses, path: "statuses." };
    if (statuses === undefined) return { kind: "single", item: body };
  }
  return undefined;
}

const MAX_DEPTH = 32;

/** The fields a status object may carry; the rest is kept only within `EXTRA_BYTES`. */
const KNOWN_FIELDS = new Set(["uuid", "status", "timestamp", "error", "wam_id", "to"]);
const KNOWN_ERROR_FIELDS = new Set(["code", "message", "title"]);
export const EXTRA_BYTES = 4096;

/** `value` without any `text` key at any depth: Betatel's delivery records carry the OTP as `text`. */
function withoutText(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(withoutText);
  if (value && typeof value === "object") {
    return Object.fromEntries(
      Object.entries(value).flatMap(([key, child]) => (key === "text" ? [] : [[key, withoutText(child)]])),
    );
  }
  return value;
}

/**
 * The raw item as kept in `message_events.payload`: the known fields (already validated and bounded), and the
 * other fields (top-level, or beside `error`'s code and message) in order while they fit in `EXTRA_BYTES`; a
 * field that does not fit is dropped and `truncated: true` says so. Never a `text`, at any depth.
 */
export function storedPayload(item: Record<string, unknown>): Record<string, unknown> {
  const kept: Record<string, unknown> = {};
  const extras: Array<[target: Record<string, unknown>, key: string, value: unknown]> = [];
  for (const [key, value] of Object.entries(item)) {
    if (key === "text") continue;
    if (key === "error" && value && typeof value === "object") {
      const error: Record<string, unknown> = {};
      kept.error = error;
      for (const [field, child] of Object.entries(value)) {
        if (KNOWN_ERROR_FIELDS.has(field)) error[field] = child;
        else if (field !== "text") extras.push([error, field, child]);
      }
    } else if (KNOWN_FIELDS.has(key)) {
      kept[key] = value;
    } else {
      extras.push([kept, key, value]);
    }
  }
  let budget = EXTRA_BYTES;
  for (const [target, key, value] of extras) {
    const clean = withoutText(value);
    const size = Buffer.byteLength(JSON.stringify(key)) + Buffer.byteLength(JSON.stringify(clean) ?? "null") + 2;
    if (size <= budget) {
      target[key] = clean;
      budget -= size;
    } else {
      kept.truncated = true;
    }
  }
  return kept;
}

/**
 * Why the raw item cannot be kept as jsonb, if it cannot: Postgres refuses NUL characters and unpaired
 * surrogates, and very deep nesting is refused here before it can exhaust a stack. Iterative on purpose.
 */
function unstorable(item: unknown): string | undefined {
  const stack: Array<[unknown, number]> = [[item, 0]];
  while (stack.length > 0) {
    const [value, depth] = stack.pop() as [unknown, number];
    if (depth > MAX_DEPTH) return `is nested deeper than ${MAX_DEPTH} levels`;
    if (typeof value === "string") {
      if (value.includes("\0") || !value.isWellFormed()) return "contains a NUL character or invalid Unicode";
    } else if (value && typeof value === "object") {
      for (const [key, child] of Object.entries(value)) {
        stack.push([key, depth + 1], [child, depth + 1]);
      }
    }
  }
  return undefined;
}

const UUID = /^[A-Za-z0-9._:-]{1,255}$/;
const STATUS_NAMES: ReadonlySet<string> = new Set(STATUSES);
const isText = (value: unknown, max: number): value is string => typeof value === "string" && value.length <= max;
const isOptionalText = (value: unknown, max: number) => value === undefined || isText(value, max);

/** `error` as `statusItemSchema` accepts it. */
function isErrorField(error: unknown): boolean {
  if (error === undefined || error === null || isText(error, 1000)) return true;
  if (typeof error !== "object" || Array.isArray(error)) return false;
  const { code, message, title } = error as Record<string, unknown>;
  return (
    (isOptionalText(code, 1000) || (typeof code === "number" && Number.isFinite(code))) &&
    isOptionalText(message, 1000) &&
    isOptionalText(title, 1000)
  );
}

/**
 * The common case without zod (it was a visible share of a webhook's CPU): an item `statusItemSchema` accepts,
 * read to the same values. Anything else returns undefined and goes through the schema, which names the errors.
 */
export function readValidItem(
  item: unknown,
): Pick<StatusEvent, "uuid" | "status" | "occurredAt" | "wamId"> | undefined {
  if (typeof item !== "object" || item === null || Array.isArray(item)) return undefined;
  const { uuid, status, timestamp, error, wam_id: wamId, to } = item as Record<string, unknown>;
  if (typeof uuid !== "string" || !UUID.test(uuid) || !isText(status, 32)) return undefined;
  const upper = status.toUpperCase();
  if (!STATUS_NAMES.has(upper)) return undefined;
  let occurredAt: Date | null = null;
  if (timestamp !== undefined && timestamp !== null) {
    if (!(typeof timestamp === "number" && Number.isFinite(timestamp)) && !isText(timestamp, 64)) return undefined;
    const millis = eventTimeMillis(timestamp as number | string);
    if (typeof millis === "string") return undefined;
    occurredAt = new Date(Math.round(millis));
  }
  if (!isErrorField(error)) return undefined;
  if (!(wamId === undefined || wamId === null || isText(wamId, 255))) return undefined;
  if (!(to === undefined || to === null || isText(to, 64))) return undefined;
  return { uuid, status: upper as Status, occurredAt, wamId: (wamId as string | null | undefined) ?? null };
}

export function parseItem(item: unknown, source: string): ParsedItem {
  const problem = unstorable(item);
  const valid = problem ? undefined : readValidItem(item);
  if (valid) {
    const { code, message } = errorReason((item as { error?: unknown }).error);
    return {
      ok: true,
      event: {
        ...valid,
        source,
        payload: storedPayload(item as Record<string, unknown>),
        errorCode: code,
        errorMessage: message,
      },
    };
  }
  const result = problem
    ? { success: false as const, error: new z.ZodError([{ code: "custom", path: [], message: problem, input: item }]) }
    : statusItemSchema.safeParse(item);
  if (!result.success) {
    const raw = (item ?? {}) as { uuid?: unknown; status?: unknown };
    return {
      ok: false,
      errors: fieldErrors(result.error),
      uuid: typeof raw.uuid === "string" ? raw.uuid.slice(0, 255) : undefined,
      status: typeof raw.status === "string" ? raw.status.slice(0, 32) : undefined,
    };
  }
  const data = result.data;
  const { code, message } = errorReason(data.error);
  return {
    ok: true,
    event: {
      uuid: data.uuid,
      status: data.status,
      occurredAt: data.timestamp ?? null,
      source,
      payload: storedPayload(item as Record<string, unknown>),
      errorCode: code,
      errorMessage: message,
      wamId: data.wam_id ?? null,
    },
  };
}
