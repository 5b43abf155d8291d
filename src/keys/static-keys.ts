import { z } from "zod";

export interface StaticKey {
  team: string;
  key: string;
}

export const DEFAULT_TEAM = "default";

/** Team names: short, and safe as a metrics label and in logs. */
export const teamNameSchema = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, "must be 1 to 64 letters, digits, dots, dashes or underscores");

/**
 * `API_KEYS`: comma-separated `team:key` pairs or bare keys (team `default`), e.g. `growth:k1,billing:k2,k3`.
 * Refuses (with a message naming the problem, never the key) an empty key, a bad team name or a key given twice.
 */
export function parseApiKeys(value: string | undefined, ctx: z.RefinementCtx): StaticKey[] {
  const keys: StaticKey[] = [];
  const entries = (value ?? "")
    .split(",")
    .map((entry) => entry.trim())
    .filter(Boolean);
  for (const [index, entry] of entries.entries()) {
    const colon = entry.indexOf(":");
    const team = colon === -1 ? DEFAULT_TEAM : entry.slice(0, colon).trim();
    const key = colon === -1 ? entry : entry.slice(colon + 1).trim();
    const where = `entry ${index + 1}`;
    if (!teamNameSchema.safeParse(team).success) {
      ctx.addIssue({
        code: "custom",
        message: `${where}: the team must be 1 to 64 letters, digits, dots, dashes or underscores`,
      });
      return z.NEVER;
    }
    if (!key) {
      ctx.addIssue({ code: "custom", message: `${where}: the key is empty` });
      return z.NEVER;
    }
    if (keys.some((known) => known.key === key)) {
      ctx.addIssue({ code: "custom", message: `${where}: the same key is listed twice` });
      return z.NEVER;
    }
    keys.push({ team, key });
  }
  return keys;
}
