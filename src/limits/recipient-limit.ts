import type { Database } from "../db/database.ts";
import { inTransaction } from "../db/sql.ts";
import type { RecipientLimit } from "./limits-config.ts";
import { addRecipientSend, lockRecipient, recentRecipientSends } from "./repository.ts";

export type Reservation = { allowed: true } | { allowed: false; retryAfterSeconds: number; limit: RecipientLimit };

/**
 * Counts one send to `to` if every limit allows it, atomically over all instances: the number's advisory
 * lock serialises the count and the insert (two instances can never both see "4 of 5" and both send). Rows
 * older than the longest window are deleted on the way. When refused, `retryAfterSeconds` is when the oldest
 * counted send leaves the window that is full.
 */
export async function reserveRecipientSend(
  db: Database,
  limits: readonly RecipientLimit[],
  send: { to: string; team: string },
): Promise<Reservation> {
  const longestMs = Math.max(...limits.map((limit) => limit.windowMs));
  return inTransaction(db.pool, async (sql) => {
    await lockRecipient(sql, send.to);
    // After the lock, in a statement of its own: its snapshot sees every send committed before we got the lock.
    const row = await recentRecipientSends(sql, send.to, longestMs);
    const now = row?.now.getTime() ?? Date.now();
    const sent = (row?.sent ?? []).map((date) => date.getTime());
    let refused: { retryAt: number; limit: RecipientLimit } | undefined;
    for (const limit of limits) {
      const inWindow = sent.filter((at) => at > now - limit.windowMs);
      if (inWindow.length < limit.limit) continue;
      // The window holds `limit` or more: one more send fits once all but `limit - 1` of them have left it.
      const retryAt = (inWindow[inWindow.length - limit.limit] as number) + limit.windowMs;
      if (!refused || retryAt > refused.retryAt) refused = { retryAt, limit };
    }
    if (refused) {
      return {
        allowed: false,
        retryAfterSeconds: Math.max(1, Math.ceil((refused.retryAt - now) / 1000)),
        limit: refused.limit,
      };
    }
    await addRecipientSend(sql, { to: send.to, team: send.team, at: new Date(now), keepMs: longestMs });
    return { allowed: true };
  });
}
