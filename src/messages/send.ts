import { setTimeout as sleep } from "node:timers/promises";
import type { Logger } from "pino";
import type { Betatel } from "../betatel/client.ts";
import { BetatelError, type BetatelFailure } from "../betatel/errors.ts";
import { acceptsWrites, type Database } from "../db/database.ts";
import { isDatabaseUnavailable, StorageUnavailableError, withStorage } from "../db/errors.ts";
import { AppError, problemBody, STORAGE_RETRY_AFTER_SECONDS } from "../http/problem.ts";
import type { ProblemCode } from "../http/problems.ts";
import type { SendGuard } from "../limits/send-guard.ts";
import { maskPhone } from "../phone/phone.ts";
import { claimedSendMs, STORE_BUDGET_MS } from "./deadlines.ts";
import {
  claimIdempotencyKey,
  releaseIdempotencyKey,
  requestFingerprint,
  type StoredAnswer,
  saveIdempotentAnswer,
} from "./idempotency.ts";
import type { InFlightSends, SendInFlight } from "./in-flight.ts";
import { createMessage, MessageUuidTakenError, type NewMessage } from "./repository.ts";
import type { SendMessageBody } from "./schemas.ts";

export interface SendDeps {
  db: Database;
  betatel: Betatel;
  logger: Logger;
  betatelTimeoutMs: number;
  /** Sends in progress, which shutdown waits for; none tracked when absent. */
  inFlight?: InFlightSends;
  /** The abuse limits (src/limits), checked after the idempotency claim and before Betatel is called. */
  guard?: SendGuard;
}

export interface SendRequest {
  body: SendMessageBody;
  idempotencyKey: string | undefined;
  apiKeyId: string;
  apiKey: string;
  /** The caller's team: the message is stamped with it. */
  team: string;
  /** Set when a verification sends its code. */
  verificationId?: string;
}

const PROVIDER_PROBLEMS: Record<BetatelFailure, ProblemCode> = {
  rejected: "provider_rejected",
  auth_failed: "provider_auth_failed",
  payment_required: "provider_payment_required",
  unavailable: "provider_unavailable",
  timeout: "provider_timeout",
};

/**
 * A send that failed after the OTP may have gone out (a timeout, a 5xx, a cut connection, stored-after-sent, a
 * uuid in use): whoever retries must not send a second one, and whatever the OTP proves must be kept.
 */
export class OtpMayBeOutError extends AppError {
  override name = "OtpMayBeOutError";
}

function providerProblem(error: BetatelError, request: SendRequest): AppError {
  // Only a rejection carries Betatel's words: they tell the caller what to change. Other reasons are ours to
  // fix. A verification's never: Betatel may quote the text, and with it the code, in a form we cannot redact.
  const quote = error.failure === "rejected" && error.reason && !request.verificationId;
  const options = { code: PROVIDER_PROBLEMS[error.failure], detail: quote ? error.reason : error.message };
  return error.mayHaveSent ? new OtpMayBeOutError(options) : new AppError(options);
}

function toAnswer(error: AppError): StoredAnswer {
  return { status: error.status, body: problemBody(error) };
}

// Besides "database unreachable": a deadlock or serialization failure, Prisma's "no connection for the
// transaction in time" (P2028), a cancelled statement, a lock not available. Other errors would fail again.
const BRIEF_CODES = new Set(["40P01", "40001", "P2028", "57014", "55P03"]);
const isBriefFailure = (error: unknown) =>
  isDatabaseUnavailable(error) || BRIEF_CODES.has(String((error as { code?: unknown } | null)?.code));

/**
 * Stores a message Betatel accepted, retrying brief failures (a reset connection, a full pool) until
 * `STORE_BUDGET_MS` is spent: the OTP is out, and each try is safe (the uuid is stored at most once).
 */
async function storeSentMessage(deps: SendDeps, message: NewMessage) {
  const deadline = Date.now() + STORE_BUDGET_MS;
  for (let attempt = 1; ; attempt++) {
    const remaining = deadline - Date.now();
    try {
      return await createMessage(deps.db, message, remaining);
    } catch (error) {
      const pause = Math.min(100 * 2 ** (attempt - 1), 1_000);
      if (!isBriefFailure(error) || deadline - Date.now() < pause + 500) throw error;
      deps.logger.warn({ err: error, uuid: message.uuid, attempt }, "storing a sent otp failed; retrying");
      await sleep(pause);
    }
  }
}

/**
 * Betatel accepted the OTP but answered a uuid another message already has: this send cannot be tracked, and
 * the other message must not be shown in its place. The answer is kept for the Idempotency-Key, since the OTP
 * may well have gone out and a retry must not send a second one.
 */
async function uuidTaken(deps: SendDeps, request: SendRequest, error: MessageUuidTakenError): Promise<AppError> {
  deps.logger.error(
    { uuid: error.uuid, team: request.team, to: maskPhone(request.body.to) },
    "betatel answered a uuid that another message already has; this send is not tracked",
  );
  const problem = new OtpMayBeOutError({
    code: "provider_unavailable",
    detail: "Betatel answered with a message uuid that is already in use, so this message cannot be tracked.",
  });
  if (request.idempotencyKey) {
    const scope = idempotencyScope(request);
    await saveIdempotentAnswer(deps.db, scope, request.idempotencyKey, toAnswer(problem)).catch(() => {});
  }
  return problem;
}

const idempotencyScope = (request: SendRequest) => `${request.team}:${request.apiKeyId}`;

/**
 * Sends one OTP: claim the idempotency key (or replay its answer), call Betatel, store the message as
 * PENDING. The database is touched before Betatel, so with the database down nothing is sent (503).
 */
export async function sendMessage(deps: SendDeps, request: SendRequest): Promise<StoredAnswer> {
  const entry: SendInFlight = {
    to: maskPhone(request.body.to),
    idempotencyKey: request.idempotencyKey,
    startedAt: new Date(),
  };
  return deps.inFlight ? deps.inFlight.run(entry, () => send(deps, request, entry)) : send(deps, request, entry);
}

async function send(deps: SendDeps, request: SendRequest, entry: SendInFlight): Promise<StoredAnswer> {
  const { db, betatel, logger } = deps;
  const { idempotencyKey: key } = request;
  // Idempotency keys are the caller's own strings: scoped to the team and the key, so no one else's replay shows.
  const scope = idempotencyScope(request);

  if (key) {
    const fingerprint = requestFingerprint(request.body, request.apiKey);
    // A twin waits as long as the first request can really take once claimed (see `claimedSendMs`).
    const claim = await withStorage(() =>
      claimIdempotencyKey(db, scope, key, fingerprint, claimedSendMs(deps.betatelTimeoutMs)),
    );
    if (claim.kind === "replay") return claim.answer;
  } else if (!deps.guard?.usesDatabase) {
    // Reachable and writable, or the OTP would go out and fail to be stored.
    if (!(await withStorage(() => acceptsWrites(db.pool)))) throw new StorageUnavailableError({ reason: "read-only" });
  }
  if (deps.guard) {
    try {
      await deps.guard.check({ to: request.body.to, team: request.team });
    } catch (error) {
      // Refused (or the database failed) before anything was sent: the key may be used again.
      if (key) await releaseIdempotencyKey(db, scope, key).catch(() => {});
      throw error;
    }
  }

  let sent: { uuid: string };
  const requestedAt = new Date();
  try {
    sent = await betatel.sendOtp({ to: request.body.to, text: request.body.text });
  } catch (error) {
    if (!(error instanceof BetatelError)) throw error;
    logger.warn(
      { failure: error.failure, betatelStatus: error.status, to: maskPhone(request.body.to) },
      "betatel send failed",
    );
    const problem = providerProblem(error, request);
    if (key) {
      // After a timeout, a 5xx, an unreadable 2xx or a cut connection the OTP may have gone out: keep the
      // answer so neither a retry nor a waiting twin can send a second one. Any other failure (Betatel refused
      // the request, or was never reached) sent nothing: free the key for a retry.
      await (problem instanceof OtpMayBeOutError
        ? saveIdempotentAnswer(db, scope, key, toAnswer(problem))
        : releaseIdempotencyKey(db, scope, key)
      ).catch(() => {});
    }
    throw problem;
  }

  entry.uuid = sent.uuid;
  let message: Awaited<ReturnType<typeof createMessage>>;
  try {
    message = await storeSentMessage(deps, {
      uuid: sent.uuid,
      to: request.body.to,
      textLength: [...request.body.text].length,
      team: request.team,
      reference: request.body.reference,
      metadata: request.body.metadata,
      requestedAt,
      verificationId: request.verificationId,
    });
  } catch (error) {
    if (error instanceof MessageUuidTakenError) throw await uuidTaken(deps, request, error);
    // Betatel accepted the OTP but we could not record it: say so, with the uuid, so nothing is lost. Whatever
    // the database said, for the caller this is the storage failing (never a bare 500 that drops the uuid).
    logger.error({ err: error, uuid: sent.uuid }, "betatel accepted the otp but storing it failed");
    const problem = new OtpMayBeOutError({
      code: "storage_unavailable",
      extra: { uuid: sent.uuid },
      detail: "Betatel accepted the message but it could not be stored; its status cannot be tracked yet.",
      headers: { "Retry-After": String(STORAGE_RETRY_AFTER_SECONDS) },
    });
    // The OTP is out: a retry with the key gets this answer (and the uuid) again, never a second OTP.
    if (key) await saveIdempotentAnswer(db, scope, key, toAnswer(problem)).catch(() => {});
    throw problem;
  }

  const answer: StoredAnswer = {
    status: 201,
    body: { uuid: message.uuid, to: message.to, status: "PENDING", createdAt: message.createdAt },
  };
  if (key) {
    // The message is stored and tracked: a failure to record the replay must not turn this into an error.
    // The key then stays claimed without an answer, and a retry with it gets 409 instead of a second OTP.
    await saveIdempotentAnswer(db, scope, key, answer).catch((error: unknown) => {
      logger.warn({ err: error, uuid: message.uuid }, "could not record the idempotent answer");
    });
  }
  logger.info({ uuid: message.uuid, to: maskPhone(message.to) }, "otp sent");
  return answer;
}
