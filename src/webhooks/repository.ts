import type { Database } from "../db/database.ts";

/** Whether any of `events` names a uuid with no message row (its status would be buffered). */
export async function anyUnknownMessage(db: Pick<Database, "pool">, events: Array<{ uuid: string }>): Promise<boolean> {
  const uuids = [...new Set(events.map((event) => event.uuid))];
  if (uuids.length === 0) return false;
  const { rows } = await db.pool.query<{ known: number }>(
    "SELECT count(*)::int AS known FROM messages WHERE uuid = ANY($1::text[])",
    [uuids],
  );
  return (rows[0]?.known ?? 0) < uuids.length;
}
