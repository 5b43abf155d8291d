import { createHash, randomBytes } from "node:crypto";
import { crc32 } from "node:zlib";

/**
 * Stored API keys look like `otpk_<32 base62 characters><6 character checksum>`. The fixed prefix lets secret
 * scanners (GitHub push protection, gitleaks, trufflehog) recognise a leaked key with one simple rule, and the
 * checksum lets them (and us) tell a real key from a look-alike without asking the database.
 */
export const KEY_PREFIX = "otpk_";
const BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const RANDOM_LENGTH = 32; // 32 base62 characters: about 190 bits
const CHECKSUM_LENGTH = 6;
const KEY_PATTERN = new RegExp(`^${KEY_PREFIX}[0-9A-Za-z]{${RANDOM_LENGTH + CHECKSUM_LENGTH}}$`);

function randomBase62(length: number): string {
  let out = "";
  while (out.length < length) {
    for (const byte of randomBytes(length * 2)) {
      // 248 = 4 * 62: dropping bytes above it keeps every character equally likely.
      if (byte < 248 && out.length < length) out += BASE62[byte % 62];
    }
  }
  return out;
}

function base62(value: number, length: number): string {
  let out = "";
  for (let rest = value; out.length < length; rest = Math.floor(rest / 62)) out = BASE62[rest % 62] + out;
  return out;
}

const checksum = (body: string) => base62(crc32(body), CHECKSUM_LENGTH);

/** A new random key in the stored-key format. */
export function generateApiKey(): string {
  const body = `${KEY_PREFIX}${randomBase62(RANDOM_LENGTH)}`;
  return body + checksum(body);
}

/** Whether `value` has the stored-key shape and a matching checksum (no database needed). */
export function isWellFormedApiKey(value: string): boolean {
  if (!KEY_PATTERN.test(value)) return false;
  const body = value.slice(0, -CHECKSUM_LENGTH);
  return checksum(body) === value.slice(-CHECKSUM_LENGTH);
}

/**
 * What the table keeps of a key: sha256, hex. A fast hash is enough because the key is ~190 random bits: no
 * dictionary or brute force can reach it, so bcrypt/argon2's deliberate slowness (meant for human passwords)
 * would only cost every request tens of milliseconds and rule out looking the key up by its hash.
 */
export const hashApiKey = (key: string) => createHash("sha256").update(key).digest("hex");

/** The part of a key shown by `keys list` to recognise it: the prefix and 6 random characters. */
export const displayPrefix = (key: string) => key.slice(0, KEY_PREFIX.length + 6);
