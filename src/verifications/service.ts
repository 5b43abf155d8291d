import type pg from "pg";
import { ulid } from "ulid";
import { withStorage } from "../db/errors.ts";
import { AppError, notFound } from "../http/problem.ts";
import type { SendMessageBody } from "../messages/schemas.ts";
import { OtpMayBeOutError, type SendDeps, sendMessage } from "../messages/send.ts";
import { maskPhone } from "../phone/phone.ts";
import { codeMatches, MAX_CHECKS, MAX_SENDS, newCodeSalt, renderVerificationText, verificationCode } from "./code.ts";
import {
  cancelVerification,
  claimResend,
  deleteVerification,
  findPendingId,
  findVerification,
  insertVerification,
  recordCheck,
  releaseResend,
  type VerificationRow,
  verificationMessages,
} from "./repository.ts";
import type { VerificationView } from "./schemas.ts";

export interface VerificationSettings {
  secret: string;
  ttlMs: number;
  codeLength: number;
  textTemplate: string;
  /** Sandbox only: the code is logged so that the flow can be tried by hand. Never in production. */
  logCodes: boolean;
}

export interface VerificationDeps extends SendDeps {
  settings: VerificationSettings;
  /** Counts started, approved, expired and max_attempts (metrics). */
  onEvent?: (event: "started" | "approved" | "expired" | "max_attempts") => void;
}

async function view(pool: pg.Pool, row: VerificationRow): Promise<VerificationView> {
  return {
    id: row.id,
    to: row.to,
    status: row.status,
    expiresAt: row.expiresAt.toISOString(),
    checksLeft: Math.max(0, MAX_CHECKS - row.attempts),
    sendsLeft: Math.max(0, MAX_SENDS - row.sends),
    reference: row.reference,
    metadata: row.metadata as VerificationView["metadata"],
    createdAt: row.createdAt.toISOString(),
    approvedAt: row.approvedAt?.toISOString() ?? null,
    messages: await verificationMessages(pool, row.id),
  };
}

const closed = (row: VerificationRow) =>
  new AppError({
    code: "verification_closed",
    detail: `This verification is ${row.status}.`,
    extra: { status: row.status },
  });

const retryAfter = (ms: number) => ({ "Retry-After": String(Math.max(1, Math.ceil(ms / 1000))) });

/** Sends the verification's code through the ordinary send path: limits, Betatel, tracking. */
function sendCode(deps: VerificationDeps, row: VerificationRow, apiKeyId: string, apiKey: string) {
  const { secret, codeLength, ttlMs, textTemplate, logCodes } = deps.settings;
  const code = verificationCode(secret, row.id, row.codeSalt, codeLength);
  if (logCodes)
    deps.logger.info({ verificationId: row.id, code }, "SANDBOX: verification code (never logged in production)");
  return sendMessage(deps, {
    body: {
      to: row.to,
      text: renderVerificationText(textTemplate, code, ttlMs),
      reference: row.reference ?? undefined,
      metadata: (row.metadata as SendMessageBody["metadata"]) ?? undefined,
    },
    team: row.team,
    idempotencyKey: undefined,
    apiKeyId,
    apiKey,
    verificationId: row.id,
  });
}

export interface StartRequest {
  team: string;
  to: string;
  reference?: string;
  metadata?: SendMessageBody["metadata"];
  apiKeyId: string;
  apiKey: string;
}

/**
 * Starts a verification for the number, or resends the pending one's code (the same code, at most MAX_SENDS
 * times, not within the cooldown). 201 for a new one, 200 for a resend.
 */
export async function startVerification(
  deps: VerificationDeps,
  request: StartRequest,
  tries = 3,
): Promise<{ status: 200 | 201; body: VerificationView }> {
  const pool = deps.db.pool;
  const { row: created, expired } = await withStorage(() =>
    insertVerification(pool, {
      id: `ver_${ulid()}`,
      team: request.team,
      to: request.to,
      codeSalt: newCodeSalt(),
      ttlMs: deps.settings.ttlMs,
      reference: request.reference,
      metadata: request.metadata,
    }),
  );
  for (let i = 0; i < expired; i++) deps.onEvent?.("expired");
  if (created) {
    try {
      await sendCode(deps, created, request.apiKeyId, request.apiKey);
    } catch (error) {
      // The code may have reached the person (a timeout, a 5xx, stored-after-sent): the verification stays,
      // named in the answer, so the code can be checked and a new start resends it instead of sending another.
      if (error instanceof OtpMayBeOutError) {
        error.extra.id = created.id;
        throw error;
      }
      // Refused before or by Betatel: nothing of it is kept.
      await deleteVerification(pool, created.id).catch(() => {});
      throw error;
    }
    deps.onEvent?.("started");
    deps.logger.info({ verificationId: created.id, to: maskPhone(created.to) }, "verification started");
    return { status: 201, body: await withStorage(() => view(pool, created)) };
  }

  const claim = await withStorage(() => claimResend(pool, request.team, request.to));
  switch (claim.kind) {
    case "none":
      // The pending one ended between our insert and this claim (its first send failed, or it expired).
      if (tries > 1) return startVerification(deps, request, tries - 1);
      throw new AppError({
        code: "verification_busy",
        detail: "This number's verification is changing; retry.",
        headers: { "Retry-After": "1" },
      });
    case "max_sends_reached":
      throw new AppError({
        code: "max_sends_reached",
        detail: `The code was sent ${MAX_SENDS} times already.`,
        extra: { id: claim.verification.id },
      });
    case "too_soon":
      throw new AppError({
        code: "resend_too_soon",
        detail: "The code was sent moments ago; wait before sending it again.",
        extra: { id: claim.verification.id },
        headers: retryAfter(claim.retryAfterMs),
      });
  }
  try {
    await sendCode(deps, claim.verification, request.apiKeyId, request.apiKey);
  } catch (error) {
    // Unsent (refused before or by Betatel): the resend is given back, so the person can simply ask again.
    if (!(error instanceof OtpMayBeOutError)) {
      await releaseResend(pool, claim.verification.id, claim.previousSentAt).catch(() => {});
    }
    if (error instanceof AppError) error.extra.id = claim.verification.id;
    throw error;
  }
  deps.logger.info({ verificationId: claim.verification.id, to: maskPhone(request.to) }, "verification code resent");
  return { status: 200, body: await withStorage(() => view(pool, claim.verification)) };
}

async function mustFind(pool: pg.Pool, team: string, id: string): Promise<VerificationRow> {
  const row = await withStorage(() => findVerification(pool, team, id));
  if (!row) throw notFound(`No verification with id ${id}.`, "verification_not_found");
  return row;
}

/** Checks a code. Wrong codes use up checks; a closed verification answers 409 with its status. */
export async function checkVerification(
  deps: VerificationDeps,
  team: string,
  id: string,
  code: string,
): Promise<VerificationView> {
  const pool = deps.db.pool;
  const found = await mustFind(pool, team, id);
  if (found.status !== "pending") throw closed(found);
  const { secret, codeLength } = deps.settings;
  const right = codeMatches(code, verificationCode(secret, found.id, found.codeSalt, codeLength));
  const updated = await withStorage(() => recordCheck(pool, team, id, right));
  // Closed, or expired, in the meantime.
  if (!updated) throw closed(await mustFind(pool, team, id));
  if (updated.status === "approved") deps.onEvent?.("approved");
  if (updated.status === "max_attempts_reached") deps.onEvent?.("max_attempts");
  return view(pool, updated);
}

/** Checks the code of the number's pending verification. */
export async function checkByNumber(deps: VerificationDeps, team: string, to: string, code: string) {
  const id = await withStorage(() => findPendingId(deps.db.pool, team, to));
  if (!id) throw notFound("This number has no pending verification.", "verification_not_found");
  return checkVerification(deps, team, id, code);
}

export async function readVerification(deps: VerificationDeps, team: string, id: string) {
  return view(deps.db.pool, await mustFind(deps.db.pool, team, id));
}

export async function cancel(deps: VerificationDeps, team: string, id: string) {
  const canceled = await withStorage(() => cancelVerification(deps.db.pool, team, id));
  if (!canceled) throw closed(await mustFind(deps.db.pool, team, id));
  return view(deps.db.pool, canceled);
}
