import type { Database } from "../../src/db/database.ts";

/** The tables the send path writes; each must stay free of the OTP text. */
export const SEND_TABLES = ["messages", "message_events", "idempotency_keys"] as const;

/** How many `messages` rows exist for this phone number (what a failed send must not have written). */
export async function messagesTo(db: Database, to: string): Promise<number> {
  const { rows } = await db.pool.query<{ count: string }>(`SELECT count(*) FROM messages WHERE "to" = $1`, [to]);
  return Number(rows[0]?.count);
}

/** The send tables in which any column of any row contains `needle` (every column, rendered as JSON text). */
export async function tablesContaining(db: Database, needle: string): Promise<string[]> {
  const found: string[] = [];
  for (const table of SEND_TABLES) {
    const { rows } = await db.pool.query<{ count: string }>(
      `SELECT count(*) FROM ${table} t WHERE strpos(row_to_json(t)::text, $1) > 0`,
      [needle],
    );
    if (Number(rows[0]?.count) > 0) found.push(table);
  }
  return found;
}

/** A unique OTP text; its code is the needle to look for in tables and logs. */
export function anOtp(): { text: string; code: string } {
  const code = `${Math.floor(100_000 + Math.random() * 899_999)}${Date.now() % 100_000}`;
  return { text: `Your verification code is ${code}`, code };
}
