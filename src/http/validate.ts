import { isUtf8 } from "node:buffer";
import express, { type RequestHandler } from "express";
import type { z } from "zod";
import { fieldErrors, unsupportedMediaType, validationFailed } from "./problem.ts";

/** Parses `value` with `schema` or throws the 400 `validation_failed` problem with field paths. */
export function parseOrThrow<S extends z.ZodType>(schema: S, value: unknown, prefix?: string): z.output<S> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const errors = fieldErrors(result.error).map((error) =>
    prefix ? { ...error, path: error.path === "(body)" ? prefix : `${prefix}.${error.path}` } : error,
  );
  throw validationFailed(errors);
}

const JSON_TYPES = ["application/json", "application/*+json"];

/** JSON routes answer 415 to any other content type instead of silently seeing an empty body. */
export const requireJsonBody: RequestHandler = (req, _res, next) => {
  if (!req.is(JSON_TYPES)) return next(unsupportedMediaType("Send Content-Type: application/json."));
  next();
};

/**
 * JSON text is UTF-8: bytes that are not (a stray 0xFF, an encoded lone surrogate) would be decoded as U+FFFD
 * and the request would go on with text the caller never sent. Refused as malformed JSON instead.
 */
function refuseInvalidUtf8(_req: unknown, _res: unknown, body: Buffer): void {
  if (!isUtf8(body)) throw Object.assign(new Error("not UTF-8"), { status: 400, type: "entity.parse.failed" });
}

/** The body parsing of a JSON route: the content type checked, then parsed (the same types), at most `limit`. */
export const jsonBody = (limit: string): RequestHandler[] => [
  requireJsonBody,
  express.json({ limit, strict: true, type: JSON_TYPES, verify: refuseInvalidUtf8 }),
];
