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

/** The body parsing of a JSON route: the content type checked, then parsed (the same types), at most `limit`. */
export const jsonBody = (limit: string): RequestHandler[] => [
  requireJsonBody,
  express.json({ limit, strict: true, type: JSON_TYPES }),
];
