import { createHmac } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import type { Response } from "express";
import type { Database } from "../db/database.ts";
import type { Prisma } from "../generated/prisma/client.ts";
import { AppError, STORAGE_RETRY_AFTER_SECONDS } from "../http/problem.ts";
import { insertIdempotencyClaim } from "./repository.ts";

export const IDEMPOTENCY_TTL_MS = 24 * 60 * 60 * 1000;

export interface StoredAnswer {
  status: number;
  body: unknown;
}

/**
 * JSON that is the same whatever order the caller's fields came in. The body's own fields already come in the
 * schema's order; nested objects (metadata) get their keys sorted. The body's order is kept so that keys stored
 * before this canonical form existed still match.
 */
function canonicalJson(body: unknown): string {
  return JSON.stringify(body, (key, inner: unknown) =>
    key !== "" && inner !== null && typeof inner === "object" && !Array.isArray(inner)
      ? Object.fromEntries(Object.entries(inner).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : inner,
  );
}

/**
 * A fingerprint of the request body. Keyed with the caller's API key so that the stored value cannot be
 * brute-forced back to a short OTP by someone who can read the table.
 */
export function requestFingerprint(body: unknown, apiKey: string): string {
  return createHmac("sha256", `idempotency:${apiKey}`).update(canonicalJson(body)).digest("hex");
}

/** A stored failure answered as it was first: problem+json, with the Retry-After of a 503. */
export function replayProblem(res: Response, answer: StoredAnswer): void {
  if (answer.status === 503) res.set("Retry-After", String(STORAGE_RETRY_AFTER_SECONDS));
  res.status(answer.status).type("application/problem+json").json(answer.body);
}

export type Claim = { kind: "claimed" } | { kind: "replay"; answer: StoredAnswer };

/**
 * Claims (scope, key) for this request, or returns the first request's answer. A concurrent twin waits for
 * the first to finish, at most `waitMs` after the first claimed the key, and never calls Betatel itself: if
 * the first freed the key (it failed without sending), the twin answers 409 and the caller's retry claims
 * it. Same key, different body: 422.
 */
export async function claimIdempotencyKey(
  db: Database,
  scope: string,
  key: string,
  fingerprint: string,
  waitMs: number,
): Promise<Claim> {
  let waited = false;
  for (;;) {
    if (!waited) {
      const claim = { scope, key, requestHash: fingerprint, createdAt: new Date() };
      if (await insertIdempotencyClaim(db, claim)) return { kind: "claimed" };
    }
    const existing = await db.prisma.idempotencyKey.findUnique({ where: { scope_key: { scope, key } } });
    if (!existing) {
      if (waited) throw firstRequestFailed();
      continue; // released between our insert and read: try to claim it again
    }
    if (Date.now() - existing.createdAt.getTime() > IDEMPOTENCY_TTL_MS) {
      await db.prisma.idempotencyKey.deleteMany({ where: { scope, key, createdAt: existing.createdAt } });
      continue;
    }
    if (existing.requestHash !== fingerprint) {
      throw new AppError({
        code: "idempotency_key_reused",
        detail: "This Idempotency-Key was used with a different request body.",
      });
    }
    if (existing.responseStatus !== null) {
      return { kind: "replay", answer: { status: existing.responseStatus, body: existing.responseBody } };
    }
    // The first request cannot still be running past its own deadline: a claim that old was abandoned.
    if (Date.now() >= existing.createdAt.getTime() + waitMs) {
      // The first request never finished (it crashed or lost the database): whether Betatel sent the OTP is
      // unknown, so this key cannot safely send again.
      throw new AppError({
        code: "idempotency_key_in_progress",
        detail: "A request with this Idempotency-Key has not finished; retry later or use a new key.",
        headers: { "Retry-After": "1" },
      });
    }
    waited = true;
    await sleep(50);
  }
}

const firstRequestFailed = () =>
  new AppError({
    code: "idempotency_key_in_progress",
    detail: "The first request with this Idempotency-Key failed without sending; retry it with the same key.",
    headers: { "Retry-After": "1" },
  });

export async function saveIdempotentAnswer(
  db: Database,
  scope: string,
  key: string,
  answer: StoredAnswer,
): Promise<void> {
  await db.prisma.idempotencyKey.update({
    where: { scope_key: { scope, key } },
    data: { responseStatus: answer.status, responseBody: answer.body as Prisma.InputJsonValue },
  });
}

/** Frees the key after a failure that sent nothing, so the caller may retry with the same key. */
export async function releaseIdempotencyKey(db: Database, scope: string, key: string): Promise<void> {
  await db.prisma.idempotencyKey.deleteMany({ where: { scope, key, responseStatus: null } });
}
