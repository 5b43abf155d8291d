import type { ErrorRequestHandler, RequestHandler } from "express";
import type { z } from "zod";
import { StorageUnavailableError, storageUnavailableReason } from "../db/errors.ts";

export interface FieldError {
  path: string;
  message: string;
}

/** A failure with a stable `code`, answered as RFC 9457 problem+json by `problemHandler`. */
export class AppError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    readonly title: string,
    readonly detail?: string,
    readonly extra: Record<string, unknown> = {},
    readonly headers: Record<string, string> = {},
  ) {
    super(detail ?? title);
    this.name = "AppError";
  }
}

export const validationFailed = (errors: FieldError[], detail = "The request is not valid.") =>
  new AppError(400, "validation_failed", "Validation failed", detail, { errors });

export const notFound = (detail: string, code = "not_found") => new AppError(404, code, "Not found", detail);

/** Seconds a caller (or Betatel) is asked to wait before retrying when the database cannot serve. */
export const STORAGE_RETRY_AFTER_SECONDS = 5;

export const storageUnavailable = (extra: Record<string, unknown> = {}) =>
  new AppError(
    503,
    "storage_unavailable",
    "Storage unavailable",
    "The database cannot serve this request now; try again.",
    extra,
    { "Retry-After": String(STORAGE_RETRY_AFTER_SECONDS) },
  );

const dotted = (path: readonly PropertyKey[]) => path.map(String).join(".") || "(body)";

/** zod issues as `{path, message}` with dotted paths (`statuses.3.uuid`); an unknown field is named by its own path. */
export function fieldErrors(error: z.ZodError): FieldError[] {
  return error.issues.flatMap((issue) =>
    issue.code === "unrecognized_keys"
      ? issue.keys.map((key) => ({ path: dotted([...issue.path, key]), message: "is not an accepted field" }))
      : [{ path: dotted(issue.path), message: issue.message }],
  );
}

export function problemBody(error: AppError): Record<string, unknown> {
  return {
    type: `urn:whatsapp-otp-tracker:problem:${error.code}`,
    title: error.title,
    status: error.status,
    detail: error.detail ?? error.title,
    code: error.code,
    ...error.extra,
  };
}

export function sendProblem(res: Parameters<RequestHandler>[1], error: AppError): void {
  res.status(error.status).set(error.headers).type("application/problem+json").json(problemBody(error));
}

/** Errors thrown by body parsers and other middleware, mapped to problems with no internals. */
function fromHttpError(error: unknown): AppError | undefined {
  const status = (error as { status?: unknown }).status;
  const type = (error as { type?: unknown }).type;
  if (typeof status !== "number" || status < 400 || status >= 500) return undefined;
  if (type === "entity.too.large") {
    return new AppError(413, "payload_too_large", "Payload too large", "The request body is too large.");
  }
  if (type === "entity.parse.failed") {
    return new AppError(400, "malformed_json", "Malformed JSON", "The request body is not valid JSON.");
  }
  if (status === 415 || type === "encoding.unsupported" || type === "charset.unsupported") {
    return new AppError(415, "unsupported_media_type", "Unsupported media type", "Send application/json.");
  }
  if (status === 404) return notFound("Nothing is served at this path.", "route_not_found");
  return new AppError(status, "bad_request", "Bad request", "The request could not be read.");
}

export const notFoundHandler: RequestHandler = (req, res) => {
  sendProblem(res, notFound(`No route for ${req.method} ${req.path}.`, "route_not_found"));
};

/**
 * The one place errors become HTTP answers. A database that cannot serve now (`storageUnavailableReason`) is a
 * 503 with Retry-After wherever it happened, logged with its reason; other unknown errors are logged and
 * answered with no internals.
 */
export const problemHandler: ErrorRequestHandler = (error, req, res, _next) => {
  const known = error instanceof AppError ? error : fromHttpError(error);
  if (known) {
    sendProblem(res, known);
    return;
  }
  const reason = storageUnavailableReason(error);
  if (reason) {
    req.log?.warn({ err: error, reason }, "storage unavailable");
    sendProblem(res, storageUnavailable(error instanceof StorageUnavailableError ? error.extra : {}));
    return;
  }
  req.log?.error({ err: error }, "unhandled error");
  sendProblem(res, new AppError(500, "internal_error", "Internal error", "Something went wrong on our side."));
};
