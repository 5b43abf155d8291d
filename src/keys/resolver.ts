import { createHash, timingSafeEqual } from "node:crypto";
import type { Database } from "../db/database.ts";
import { hashApiKey, isWellFormedApiKey } from "./key-format.ts";
import { findActiveKey, hasActiveKeys, touchKey } from "./repository.ts";
import type { StaticKey } from "./static-keys.ts";

/** Who is calling: the key's team and a stable id of the key (never the key itself). */
export interface Caller {
  team: string;
  /** `db:<id>` for a stored key, `static:<team>` for one from API_KEYS. */
  source: string;
}

export interface KeyResolver {
  /** The caller for a presented key, or undefined when the key is unknown or revoked. */
  resolve(presented: string): Promise<Caller | undefined>;
  /** True when no key is configured anywhere (API_KEYS unset and no active stored key): /v1 is open. */
  isOpen(): Promise<boolean>;
}

export interface KeyResolverOptions {
  db: Database;
  staticKeys: readonly StaticKey[];
  /**
   * How long a stored key's lookup (found, revoked or unknown) is reused. A revoked key keeps working on an
   * instance for at most this long; 5 s keeps revocation under 10 s with margin.
   */
  cacheMs?: number;
  now?: () => number;
}

const MAX_CACHED = 10_000;
const TOUCH_EVERY_MS = 60_000;
const digest = (value: string) => createHash("sha256").update(value).digest();

export function createKeyResolver(options: KeyResolverOptions): KeyResolver {
  const { db } = options;
  const cacheMs = options.cacheMs ?? 5_000;
  const now = options.now ?? Date.now;
  const statics = options.staticKeys.map((entry) => ({ ...entry, digest: digest(entry.key) }));
  const cache = new Map<string, { caller: Caller | undefined; until: number }>();
  const touched = new Map<number, number>();
  let open: { value: boolean; until: number } | undefined;

  const matchStatic = (presented: string): StaticKey | undefined => {
    const presentedDigest = digest(presented);
    let found: StaticKey | undefined;
    // Compare with every key, no early exit: the time taken does not depend on which key matched.
    for (const entry of statics) if (timingSafeEqual(presentedDigest, entry.digest)) found = entry;
    return found;
  };

  const lookupStored = async (presented: string): Promise<Caller | undefined> => {
    const keyHash = hashApiKey(presented);
    const cached = cache.get(keyHash);
    if (cached && cached.until > now()) return cached.caller;
    const row = await findActiveKey(db, keyHash);
    const caller = row ? { team: row.team, source: `db:${row.id}` } : undefined;
    if (cache.size >= MAX_CACHED) cache.clear(); // bounded: a flood of made-up keys cannot grow it
    cache.set(keyHash, { caller, until: now() + cacheMs });
    if (row && (touched.get(row.id) ?? 0) + TOUCH_EVERY_MS <= now()) {
      touched.set(row.id, now());
      // Last-used is bookkeeping: never make a request wait for it or fail because of it.
      touchKey(db, row.id).catch(() => {});
    }
    return caller;
  };

  return {
    async resolve(presented) {
      const fixed = matchStatic(presented);
      if (fixed) return { team: fixed.team, source: `static:${fixed.team}` };
      // Only the stored-key format can be in the table: anything else is refused without a query.
      return isWellFormedApiKey(presented) ? lookupStored(presented) : undefined;
    },
    async isOpen() {
      if (statics.length > 0) return false;
      if (open && open.until > now()) return open.value;
      const value = !(await hasActiveKeys(db));
      open = { value, until: now() + cacheMs };
      return value;
    },
  };
}
