/**
 * Every problem code the service answers: its HTTP status, its title, and what it means for a caller. The error
 * handler takes status and title from here, and the OpenAPI document its answers and their descriptions.
 */
export const PROBLEMS = {
  validation_failed: {
    status: 400,
    title: "Validation failed",
    description: "the request is not valid (`errors` lists the field paths)",
  },
  malformed_json: { status: 400, title: "Malformed JSON", description: "the body is not valid JSON" },
  bad_request: { status: 400, title: "Bad request", description: "the request could not be read" },
  unauthorized: { status: 401, title: "Unauthorized", description: "missing or wrong credentials" },
  watch_token_invalid: {
    status: 401,
    title: "Unauthorized",
    description: "the watch token is malformed, tampered with or for another message",
  },
  watch_token_expired: {
    status: 401,
    title: "Unauthorized",
    description: "the watch token expired: get a fresh watchUrl",
  },
  forbidden: {
    status: 403,
    title: "Forbidden",
    description: "WEBHOOK_ALLOWED_IPS is set and the client address is not in it",
  },
  not_found: { status: 404, title: "Not found", description: "no such resource" },
  route_not_found: { status: 404, title: "Not found", description: "no route for this method and path" },
  message_not_found: {
    status: 404,
    title: "Not found",
    description: "no such message, or one of another team (the two answer alike)",
  },
  delivery_not_found: { status: 404, title: "Not found", description: "no such callback delivery" },
  verification_not_found: { status: 404, title: "Not found", description: "no such verification" },
  method_not_allowed: {
    status: 405,
    title: "Method not allowed",
    description: "the path exists; `Allow` lists its methods",
  },
  idempotency_key_in_progress: {
    status: 409,
    title: "Request in progress",
    description: "the first request with this Idempotency-Key has not finished (Retry-After)",
  },
  verification_closed: {
    status: 409,
    title: "Verification closed",
    description: "the verification ended, see its `status`",
  },
  verification_busy: {
    status: 409,
    title: "Try again",
    description: "the number's verification is changing; retry (Retry-After)",
  },
  payload_too_large: { status: 413, title: "Payload too large", description: "the request body is too large" },
  unsupported_media_type: { status: 415, title: "Unsupported media type", description: "send application/json" },
  provider_rejected: {
    status: 422,
    title: "Betatel rejected the message",
    description: "Betatel refused the request; `detail` carries its reason",
  },
  idempotency_key_reused: {
    status: 422,
    title: "Idempotency key reused",
    description: "this Idempotency-Key was used with a different body",
  },
  country_not_allowed: {
    status: 422,
    title: "Country not allowed",
    description: "the number's country is not in ALLOWED_COUNTRIES; Betatel is not called",
  },
  rate_limited: {
    status: 429,
    title: "Too many requests",
    description: "this API key's sends per minute, over all instances, are used up; Betatel is not called",
  },
  recipient_rate_limited: {
    status: 429,
    title: "Too many messages to this number",
    description: "too many sends to this number, over all teams; Betatel is not called",
  },
  max_sends_reached: {
    status: 429,
    title: "Too many sends",
    description: "the verification's code was sent its most times; `id` names it",
  },
  resend_too_soon: {
    status: 429,
    title: "Resend too soon",
    description: "the code was sent moments ago (Retry-After); `id` names the pending verification",
  },
  too_many_watchers: {
    status: 429,
    title: "Too many watchers",
    description: "this instance or this API key has its most streams and long-polls open (Retry-After)",
  },
  too_many_sign_ins: {
    status: 429,
    title: "Too many sign-in attempts",
    description: "this address tried the ops sign-in 10 times this minute (Retry-After)",
  },
  too_many_buffered: {
    status: 429,
    title: "Too many statuses for unknown messages",
    description: "this sender's statuses for unknown uuids this minute are used up (Retry-After)",
  },
  internal_error: {
    status: 500,
    title: "Internal error",
    description: "a failure of ours, logged; the body carries no details",
  },
  provider_auth_failed: { status: 502, title: "Betatel refused our credentials", description: "fix BETATEL_API_KEY" },
  provider_payment_required: {
    status: 502,
    title: "Betatel account needs funds",
    description: "the Betatel account needs funds",
  },
  provider_unavailable: { status: 502, title: "Betatel is unavailable", description: "Betatel failed; retry later" },
  storage_unavailable: {
    status: 503,
    title: "Storage unavailable",
    description: "the database cannot serve now (with `uuid` when Betatel had already accepted a send); retry",
  },
  shutting_down: {
    status: 503,
    title: "Shutting down",
    description: "this instance is stopping; nothing was done, retry (another instance answers)",
  },
  provider_timeout: { status: 504, title: "Betatel did not answer in time", description: "retry later" },
} as const satisfies Record<string, { status: number; title: string; description: string }>;

export type ProblemCode = keyof typeof PROBLEMS;
