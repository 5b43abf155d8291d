import type { RequestHandler } from "express";
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

/** JSON routes answer 415 to any other content type instead of silently seeing an empty body. */
export const requireJsonBody: RequestHandler = (req, _res, next) => {
  if (!req.is("application/json") && !req.is("application/*+json")) {
    return next(unsupportedMediaType("Send Content-Type: application/json."));
  }
  next();
};
