import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";

/** Checks allowed in total (wrong codes), and sends (the first and resends), per verification. */
export const MAX_CHECKS = 5;
export const MAX_SENDS = 5;
/** Least time between two sends of one verification. */
export const RESEND_COOLDOWN_MS = 30_000;

/** A fresh random salt for a new verification (the only code material the database holds). */
export const newCodeSalt = () => randomBytes(16).toString("base64url");

/**
 * The verification's code: HMAC-SHA256(VERIFY_SECRET, id and salt) read as a number, its last `length`
 * digits. The salt is random, so the code is unpredictable without the secret; the database holds only the
 * salt, never the code or anything the code can be found from without the secret. A resend recomputes the
 * same code. (64 bits reduced modulo 10^length: the bias is below 10^-9.)
 */
export function verificationCode(secret: string, id: string, salt: string, length: number): string {
  const digest = createHmac("sha256", secret).update(`verification-code:${id}:${salt}`).digest();
  const value = digest.readBigUInt64BE(0) % 10n ** BigInt(length);
  return value.toString().padStart(length, "0");
}

/** Constant-time comparison of a presented code with the right one (hashed first: lengths may differ). */
export function codeMatches(presented: string, expected: string): boolean {
  const digest = (value: string) => createHmac("sha256", "code-compare").update(value).digest();
  return timingSafeEqual(digest(presented), digest(expected));
}

/** VERIFY_TEXT with `{code}` and `{minutes}` filled in. */
export function renderVerificationText(template: string, code: string, ttlMs: number): string {
  return template.replaceAll("{code}", code).replaceAll("{minutes}", String(Math.round(ttlMs / 60_000)));
}
