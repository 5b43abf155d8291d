import type { RequestHandler } from "express";
import { z } from "zod";
import type { Database } from "../db/database.ts";
import { withStorage } from "../db/errors.ts";
import { type FieldError, fieldErrors, validationFailed } from "../http/problem.ts";
import { type Cursor, selectMessagePage, toSummary } from "./repository.ts";
import {
  type MessageSummary,
  messageSummarySchema,
  messageUuidSchema,
  phoneNumberSchema,
  referenceSchema,
  statusSchema,
} from "./schemas.ts";

export const DEFAULT_LIMIT = 50;
export const MAX_LIMIT = 200;

export function encodeCursor(cursor: Cursor): string {
  return Buffer.from(JSON.stringify([cursor.createdAt.toISOString(), cursor.uuid])).toString("base64url");
}

function decodeCursor(value: string): Cursor | undefined {
  if (!/^[A-Za-z0-9_-]{1,1024}$/.test(value)) return undefined;
  try {
    const decoded: unknown = JSON.parse(Buffer.from(value, "base64url").toString("utf8"));
    if (!Array.isArray(decoded) || decoded.length !== 2) return undefined;
    const [createdAt, uuid] = decoded;
    if (!z.iso.datetime().safeParse(createdAt).success || !messageUuidSchema.safeParse(uuid).success) return undefined;
    return { createdAt: new Date(createdAt as string), uuid: uuid as string };
  } catch {
    return undefined;
  }
}

const cursorSchema = z
  .string()
  .transform((value, ctx) => {
    const cursor = decodeCursor(value);
    if (cursor) return cursor;
    ctx.addIssue({ code: "custom", message: "is not a cursor this service issued (use nextCursor as given)" });
    return z.NEVER;
  })
  .meta({ description: "Opaque: the `nextCursor` of the previous page." });

/** ISO 8601 with a time zone (`2026-11-27T10:00:00Z`), or a date (`2026-11-27`, midnight UTC). */
const instantSchema = z
  .union([z.iso.datetime({ offset: true }), z.iso.date()])
  .transform((value) => new Date(value))
  .meta({
    description: "ISO 8601 date-time with a time zone, or a date (midnight UTC).",
    example: "2026-11-27T10:00:00Z",
  });

const limitSchema = z
  .string()
  .regex(/^\d{1,3}$/, `must be an integer from 1 to ${MAX_LIMIT}`)
  .transform(Number)
  .pipe(z.number().int().min(1).max(MAX_LIMIT))
  .meta({ description: `Page size, 1 to ${MAX_LIMIT}; default ${DEFAULT_LIMIT}.`, example: 50 });

/** `GET /v1/messages` query. Unknown parameters are refused, not ignored. */
export const listMessagesQuerySchema = z.strictObject({
  status: statusSchema.optional(),
  to: phoneNumberSchema.optional(),
  createdFrom: instantSchema.optional().meta({ description: "Created at or after this instant (inclusive)." }),
  createdTo: instantSchema.optional().meta({ description: "Created before this instant (exclusive)." }),
  limit: limitSchema.optional(),
  cursor: cursorSchema.optional(),
  reference: referenceSchema.optional(),
});
export type ListMessagesQuery = z.output<typeof listMessagesQuerySchema>;

export const messageListSchema = z
  .object({
    items: z.array(messageSummarySchema),
    nextCursor: z
      .string()
      .nullable()
      .meta({ description: "Pass as `cursor` for the next (older) page; null at the end." }),
  })
  .meta({ id: "MessageList" });
export type MessageList = z.output<typeof messageListSchema>;

/** Parses `req.query`, naming each unknown parameter, or throws 400 `validation_failed`. */
export function parseListQuery(query: unknown): ListMessagesQuery {
  const known = new Set(Object.keys(listMessagesQuerySchema.shape));
  const unknown: FieldError[] = Object.keys((query ?? {}) as object)
    .filter((key) => !known.has(key))
    .map((key) => ({ path: `query.${key}`, message: "is not a known query parameter" }));
  const result = listMessagesQuerySchema.safeParse(query);
  const invalid = result.success
    ? []
    : fieldErrors(result.error)
        .filter((error) => error.path !== "(body)")
        .map((error) => ({ ...error, path: `query.${error.path}` }));
  const errors = [...unknown, ...invalid];
  if (errors.length > 0 || !result.success) throw validationFailed(errors, "The query parameters are not valid.");
  return result.data;
}

export async function listMessages(db: Database, query: ListMessagesQuery, team: string): Promise<MessageList> {
  const limit = query.limit ?? DEFAULT_LIMIT;
  const rows = await selectMessagePage(db, { ...query, limit }, team);
  const page = rows.slice(0, limit);
  const last = page.at(-1);
  const items: MessageSummary[] = page.map(toSummary);
  return { items, nextCursor: rows.length > limit && last ? encodeCursor(last) : null };
}

/** `GET /v1/messages`: mounted before the `/:uuid` routes, behind the same API key. */
export function listMessagesRoute(db: Database): RequestHandler {
  return async (req, res) => {
    const query = parseListQuery(req.query);
    res.json(await withStorage(() => listMessages(db, query, res.locals.team)));
  };
}
