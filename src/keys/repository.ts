import type { Database } from "../db/database.ts";
import { displayPrefix, generateApiKey, hashApiKey } from "./key-format.ts";

export interface StoredKeyView {
  id: number;
  team: string;
  name: string;
  prefix: string;
  createdAt: Date;
  lastUsedAt: Date | null;
  revokedAt: Date | null;
}

/** Creates a key for `team`; the key itself is returned here only (the table keeps its hash). */
export async function createStoredKey(
  db: Database,
  input: { team: string; name: string },
): Promise<{ key: string; record: StoredKeyView }> {
  const key = generateApiKey();
  const record = await db.prisma.apiKey.create({
    data: { team: input.team, name: input.name, prefix: displayPrefix(key), keyHash: hashApiKey(key) },
    omit: { keyHash: true },
  });
  return { key, record };
}

export const listStoredKeys = (db: Database): Promise<StoredKeyView[]> =>
  db.prisma.apiKey.findMany({ orderBy: { id: "asc" }, omit: { keyHash: true } });

/** Marks the key revoked; returns false when there is no such key (or it was already revoked). */
export async function revokeStoredKey(db: Database, id: number): Promise<boolean> {
  const { count } = await db.prisma.apiKey.updateMany({
    where: { id, revokedAt: null },
    data: { revokedAt: new Date() },
  });
  return count === 1;
}

/** The active key with this hash: one indexed lookup, raw and prepared (it runs for requests). */
export async function findActiveKey(db: Database, keyHash: string): Promise<{ id: number; team: string } | undefined> {
  const { rows } = await db.pool.query<{ id: number; team: string }>({
    name: "find_api_key",
    text: "SELECT id, team FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL",
    values: [keyHash],
  });
  return rows[0];
}

/** Whether any stored key is active (with none and no API_KEYS, /v1 stays open in development). */
export async function hasActiveKeys(db: Database): Promise<boolean> {
  const { rows } = await db.pool.query({
    name: "any_api_key",
    text: "SELECT EXISTS (SELECT 1 FROM api_keys WHERE revoked_at IS NULL) AS any",
  });
  return rows[0]?.any === true;
}

/** Records a use; skips the write when the stored time is less than a minute old. */
export async function touchKey(db: Database, id: number): Promise<void> {
  await db.pool.query({
    name: "touch_api_key",
    text: `UPDATE api_keys SET last_used_at = now()
      WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')`,
    values: [id],
  });
}
