import { getCountries } from "libphonenumber-js/max";
import { z } from "zod";

/** At most `limit` sends to one number within any `windowMs`. */
export interface RecipientLimit {
  limit: number;
  windowMs: number;
  /** As configured, e.g. `5/10m` (for messages and logs). */
  label: string;
}

const UNIT_MS = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
const MAX_WINDOW_MS = 31 * UNIT_MS.d;

/** `RECIPIENT_LIMITS`: `5/10m,20/24h` (count/window with s, m, h or d), or `off`. */
export function parseRecipientLimits(value: string, ctx: z.RefinementCtx): RecipientLimit[] {
  const text = value.trim();
  if (text.toLowerCase() === "off") return [];
  const limits: RecipientLimit[] = [];
  for (const part of text.split(",").map((entry) => entry.trim())) {
    const match = /^(\d{1,6})\/(\d{1,6})([smhd])$/.exec(part);
    const limit = Number(match?.[1]);
    const windowMs = Number(match?.[2]) * UNIT_MS[(match?.[3] ?? "s") as keyof typeof UNIT_MS];
    if (!match || limit < 1 || windowMs < 1_000 || windowMs > MAX_WINDOW_MS) {
      ctx.addIssue({
        code: "custom",
        message: `"${part}" is not count/window (e.g. 5/10m,20/24h; units s, m, h, d; window up to 31d), or "off"`,
      });
      return z.NEVER;
    }
    limits.push({ limit, windowMs, label: part });
  }
  return limits.sort((a, b) => a.windowMs - b.windowMs);
}

const KNOWN_COUNTRIES = new Set<string>(getCountries());

/** `ALLOWED_COUNTRIES`: ISO 3166 alpha-2 codes (`BA,HR,RS`); unset means every country. */
export function parseAllowedCountries(value: string, ctx: z.RefinementCtx): ReadonlySet<string> {
  const codes = value
    .split(",")
    .map((code) => code.trim().toUpperCase())
    .filter(Boolean);
  const unknown = codes.filter((code) => !KNOWN_COUNTRIES.has(code));
  if (codes.length === 0 || unknown.length > 0) {
    ctx.addIssue({
      code: "custom",
      message: `${unknown.join(", ") || "(empty)"}: not ISO 3166 alpha-2 country codes with phone numbers (e.g. BA,HR,RS)`,
    });
    return z.NEVER;
  }
  return new Set(codes);
}
