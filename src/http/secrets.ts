import { createHash, timingSafeEqual } from "node:crypto";

const digest = (value: string) => createHash("sha256").update(value).digest();

/** Constant-time check of `presented` against any of `expected` (hashing first equalises lengths). */
export function matchesSecret(presented: string | undefined, expected: readonly string[]): boolean {
  if (presented === undefined) return false;
  const presentedDigest = digest(presented);
  let match = false;
  for (const secret of expected) {
    // No early exit: the time taken does not depend on which key matched.
    match = timingSafeEqual(presentedDigest, digest(secret)) || match;
  }
  return match;
}

/** The token of `Authorization: Bearer <token>`, if that is the header's form. */
export function bearerToken(header: string | undefined): string | undefined {
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header ?? "");
  return match?.[1];
}

/** A short, stable, non-reversible id for a secret (to scope rows by API key without storing the key). */
export const secretId = (secret: string) => digest(secret).toString("hex").slice(0, 16);
