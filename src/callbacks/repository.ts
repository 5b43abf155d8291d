import type pg from "pg";
import { ulid } from "ulid";

export const CALLBACK_EVENT_TYPES = ["message.status", "verification.status"] as const;
export type CallbackEventType = (typeof CALLBACK_EVENT_TYPES)[number];

export interface CallbackEndpoint {
  id: string;
  team: string;
  url: string;
  events: CallbackEventType[];
  enabled: boolean;
  disabledReason: string | null;
  secretVersion: number;
  failingSince: Date | null;
  createdAt: Date;
}

const COLUMNS = `id, team, url, events, enabled, disabled_reason AS "disabledReason",
  secret_version AS "secretVersion", failing_since AS "failingSince", created_at AS "createdAt"`;

export async function addEndpoint(
  pool: pg.Pool,
  endpoint: { team: string; url: string; events: readonly CallbackEventType[] },
): Promise<CallbackEndpoint> {
  const { rows } = await pool.query<CallbackEndpoint>(
    `INSERT INTO callback_endpoints (id, team, url, events) VALUES ($1, $2, $3, $4) RETURNING ${COLUMNS}`,
    [`ep_${ulid()}`, endpoint.team, endpoint.url, endpoint.events],
  );
  return rows[0] as CallbackEndpoint;
}

export async function listEndpoints(pool: pg.Pool, team?: string): Promise<CallbackEndpoint[]> {
  const { rows } = await pool.query<CallbackEndpoint>(
    `SELECT ${COLUMNS} FROM callback_endpoints WHERE $1::text IS NULL OR team = $1 ORDER BY team, created_at`,
    [team ?? null],
  );
  return rows;
}

/** Enabling clears the failure history: the endpoint gets five fresh days. */
export async function setEndpointEnabled(pool: pg.Pool, id: string, enabled: boolean): Promise<boolean> {
  const { rowCount } = await pool.query(
    `UPDATE callback_endpoints
        SET enabled = $2, disabled_reason = CASE WHEN $2 THEN NULL ELSE 'disabled by an operator' END,
            failing_since = NULL, updated_at = now()
      WHERE id = $1`,
    [id, enabled],
  );
  return rowCount === 1;
}

/** Removes the endpoint and its deliveries. */
export async function removeEndpoint(pool: pg.Pool, id: string): Promise<boolean> {
  const { rowCount } = await pool.query("DELETE FROM callback_endpoints WHERE id = $1", [id]);
  return rowCount === 1;
}
