import type { ErrorRequestHandler, RequestHandler } from "express";
import type { z } from "zod";
import { StorageUnavailableError, storageUnavailableReason } from "../db/errors.ts";
import { PROBLEMS, type ProblemCode } from "./problems.ts";

export interface FieldError {
  path: string;
  message: string;
}

export interface AppErrorOptions {
  code: ProblemCode;
  /** What went wrong this time; the catalogue's title when absent. */
  detail?: string;
  /** Fields added to the body (`errors`, `uuid`, `id`...). */
  extra?: Record<string, unknown>;
  headers?: Record<string, string>;
  /** Only for a body parser's own 4xx (`bad_request`); every other code has the catalogue's status. */
  status?: number;
  /** Only where one answer needs its own title (readiness: "Not ready"). */
  title?: string;
}

/** A failure with a stable `code` of the catalogue, answered as RFC 9457 problem+json by `problemHandler`. */
export class AppError extends Error {
  readonly status: number;
  readonly code: ProblemCode;
  readonly title: string;
  readonly detail?: string;
  readonly extra: Record<string, unknown>;
  readonly headers: Record<string, string>;

  constructor(options: AppErrorOptions) {
    const entry = PROBLEMS[options.code];
    super(options.detail ?? options.title ?? entry.title);
    this.name = "AppError";
    this.code = options.code;
    this.status = options.status ?? entry.status;
    this.title = options.title ?? entry.title;
    this.detail = options.detail;
    this.extra = options.extra ?? {};
    this.headers = options.headers ?? {};
  }
}

export const validationFailed = (errors: FieldError[], detail = "The request is not valid.") =>
  new AppError({ code: "validation_failed", detail, extra: { errors } });

export const notFound = (detail: string, code: ProblemCode = "not_found") => new AppError({ code, detail });

/** The realm of the API key's (and the watch token's) challenge. */
export const API_REALM = "whatsapp-otp-tracker";

/** 401; with `realm`, a `WWW-Authenticate: Bearer` challenge tells the caller how to authenticate. */
export const unauthorized = (detail: string, realm?: string, code: ProblemCode = "unauthorized") =>
  new AppError({ code, detail, headers: realm ? { "WWW-Authenticate": `Bearer realm="${realm}"` } : {} });

export const malformedJson = () =>
  new AppError({ code: "malformed_json", detail: "The request body is not valid JSON." });

export const payloadTooLarge = (detail = "The request body is too large.") =>
  new AppError({ code: "payload_too_large", detail });

export const unsupportedMediaType = (detail = "Send application/json.") =>
  new AppError({ code: "unsupported_media_type", detail });

/** Seconds a caller (or Betatel) is asked to wait before retrying when the database cannot serve. */
export const STORAGE_RETRY_AFTER_SECONDS = 5;

export const storageUnavailable = ({
  extra = {},
  detail = "The database cannot serve this request now; try again.",
  title,
}: Pick<AppErrorOptions, "extra" | "detail" | "title"> = {}) =>
  new AppError({
    code: "storage_unavailable",
    detail,
    title,
    extra,
    headers: { "Retry-After": String(STORAGE_RETRY_AFTER_SECONDS) },
  });

/** 503 while the instance stops: the connection is closed so the caller's retry reaches another instance. */
export const shuttingDown = (detail: string) =>
  new AppError({ code: "shutting_down", detail, headers: { "Retry-After": "1", Connection: "close" } });

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
    return payloadTooLarge();
  }
  if (type === "entity.parse.failed") {
    return malformedJson();
  }
  if (status === 415 || type === "encoding.unsupported" || type === "charset.unsupported") {
    return unsupportedMediaType();
  }
  if (status === 404) return notFound("Nothing is served at this path.", "route_not_found");
  return new AppError({ code: "bad_request", status, detail: "The request could not be read." });
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
    sendProblem(res, storageUnavailable({ extra: error instanceof StorageUnavailableError ? error.extra : {} }));
    return;
  }
  req.log?.error({ err: error }, "unhandled error");
  sendProblem(res, new AppError({ code: "internal_error", detail: "Something went wrong on our side." }));
};
