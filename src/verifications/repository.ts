import type pg from "pg";
import { inTransaction } from "../db/sql.ts";
import { MAX_CHECKS, MAX_SENDS, RESEND_COOLDOWN_MS } from "./code.ts";

export const VERIFICATION_STATUSES = ["pending", "approved", "expired", "max_attempts_reached", "canceled"] as const;
export type VerificationStatus = (typeof VERIFICATION_STATUSES)[number];

export interface VerificationRow {
  id: string;
  team: string;
  to: string;
  status: VerificationStatus;
  codeSalt: string;
  attempts: number;
  sends: number;
  lastSentAt: Date | null;
  expiresAt: Date;
  reference: string | null;
  metadata: Record<string, unknown> | null;
  createdAt: Date;
  approvedAt: Date | null;
}

// A pending verification past its expiry reads as expired (by the database's clock) until the sweep or the
// next start for its number marks it so.
const COLUMNS = `id, team, "to", CASE WHEN status = 'pending' AND expires_at <= now() THEN 'expired' ELSE status END AS status,
  code_salt AS "codeSalt", attempts, sends, last_sent_at AS "lastSentAt", expires_at AS "expiresAt", reference,
  metadata, created_at AS "createdAt", approved_at AS "approvedAt"`;

// The number's pending verification past its expiry is marked expired before a new one can be pending.
const EXPIRE_NUMBER = `UPDATE verifications SET status = 'expired', updated_at = now()
  WHERE team = $1 AND "to" = $2 AND status = 'pending' AND expires_at <= now()`;

export interface NewVerification {
  id: string;
  team: string;
  to: string;
  codeSalt: string;
  ttlMs: number;
  reference?: string;
  metadata?: Record<string, unknown>;
}

/**
 * Inserts a pending verification counted as sent once now, unless the number already has a pending one for
 * this team (the unique partial index decides, across instances): then undefined, and the caller resends.
 */
export function insertVerification(
  pool: pg.Pool,
  verification: NewVerification,
): Promise<{ row: VerificationRow | undefined; expired: number }> {
  return inTransaction(pool, async (sql) => {
    const expired = (await sql(`${EXPIRE_NUMBER} RETURNING id`, [verification.team, verification.to])).length;
    const [row] = await sql<VerificationRow>(
      `INSERT INTO verifications (id, team, "to", code_salt, sends, last_sent_at, expires_at, reference, metadata)
       VALUES ($1, $2, $3, $4, 1, now(), now() + make_interval(secs => $5::float8 / 1000), $6, $7)
       ON CONFLICT (team, "to") WHERE status = 'pending' DO NOTHING
       RETURNING ${COLUMNS}`,
      [
        verification.id,
        verification.team,
        verification.to,
        verification.codeSalt,
        verification.ttlMs,
        verification.reference ?? null,
        verification.metadata === undefined ? null : JSON.stringify(verification.metadata),
      ],
    );
    return { row, expired };
  });
}

/** Removes a verification whose first send failed: nothing of it is kept. */
export async function deleteVerification(pool: pg.Pool, id: string): Promise<void> {
  await pool.query("DELETE FROM verifications WHERE id = $1", [id]);
}

export type ResendClaim =
  /** `previousSentAt`: the last send before this one, to give the claim back if this send fails unsent. */
  | { kind: "claimed"; verification: VerificationRow; previousSentAt: Date | null }
  | { kind: "none" }
  | { kind: "max_sends_reached"; verification: VerificationRow }
  | { kind: "too_soon"; verification: VerificationRow; retryAfterMs: number };

/**
 * Counts one more send of the number's pending verification, atomically: at most MAX_SENDS, never within the
 * cooldown of the last one. Two instances racing both see the same row and only one wins.
 */
export function claimResend(pool: pg.Pool, team: string, to: string): Promise<ResendClaim> {
  return inTransaction(pool, async (sql) => {
    const [before] = await sql<{ lastSentAt: Date | null }>(
      `SELECT last_sent_at AS "lastSentAt" FROM verifications
        WHERE team = $1 AND "to" = $2 AND status = 'pending' AND expires_at > now() FOR UPDATE`,
      [team, to],
    );
    const [claimed] = await sql<VerificationRow>(
      `UPDATE verifications SET sends = sends + 1, last_sent_at = now(), updated_at = now()
        WHERE team = $1 AND "to" = $2 AND status = 'pending' AND expires_at > now() AND sends < $3
          AND (last_sent_at IS NULL OR last_sent_at <= now() - make_interval(secs => $4::float8 / 1000))
        RETURNING ${COLUMNS}`,
      [team, to, MAX_SENDS, RESEND_COOLDOWN_MS],
    );
    if (claimed) return { kind: "claimed", verification: claimed, previousSentAt: before?.lastSentAt ?? null };
    const [pending] = await sql<VerificationRow & { waitMs: number }>(
      `SELECT ${COLUMNS}, greatest(0, extract(epoch FROM last_sent_at - now()) * 1000 + $3)::float8 AS "waitMs"
         FROM verifications WHERE team = $1 AND "to" = $2 AND status = 'pending' AND expires_at > now()`,
      [team, to, RESEND_COOLDOWN_MS],
    );
    if (!pending) return { kind: "none" };
    if (pending.sends >= MAX_SENDS) return { kind: "max_sends_reached", verification: pending };
    return { kind: "too_soon", verification: pending, retryAfterMs: pending.waitMs };
  });
}

/** Gives back a resend whose code never left (refused before or by Betatel): its send and its cooldown. */
export async function releaseResend(pool: pg.Pool, id: string, previousSentAt: Date | null): Promise<void> {
  await pool.query(
    `UPDATE verifications SET sends = sends - 1, last_sent_at = $2, updated_at = now() WHERE id = $1 AND sends > 1`,
    [id, previousSentAt],
  );
}

/** A team's verification. */
export async function findVerification(pool: pg.Pool, team: string, id: string): Promise<VerificationRow | undefined> {
  const { rows } = await pool.query<VerificationRow>(
    `SELECT ${COLUMNS} FROM verifications WHERE team = $1 AND id = $2`,
    [team, id],
  );
  return rows[0];
}

/** The id of the number's pending verification for this team, if any. */
export async function findPendingId(pool: pg.Pool, team: string, to: string): Promise<string | undefined> {
  const { rows } = await pool.query<{ id: string }>(
    `SELECT id FROM verifications WHERE team = $1 AND "to" = $2 AND status = 'pending' AND expires_at > now()`,
    [team, to],
  );
  return rows[0]?.id;
}

/**
 * Records one check, atomically and only while the verification is pending and not expired: the right code
 * approves it; a wrong one uses a check, and the last check ends it as `max_attempts_reached`. Undefined when
 * it was not pending (closed, expired or unknown): the caller reads why.
 */
export async function recordCheck(
  pool: pg.Pool,
  team: string,
  id: string,
  right: boolean,
): Promise<VerificationRow | undefined> {
  const { rows } = await pool.query<VerificationRow>(
    `UPDATE verifications
        SET attempts = attempts + CASE WHEN $3 THEN 0 ELSE 1 END,
            status = CASE WHEN $3 THEN 'approved' WHEN attempts + 1 >= $4 THEN 'max_attempts_reached' ELSE status END,
            approved_at = CASE WHEN $3 THEN now() END,
            updated_at = now()
      WHERE team = $1 AND id = $2 AND status = 'pending' AND expires_at > now()
      RETURNING ${COLUMNS}`,
    [team, id, right, MAX_CHECKS],
  );
  return rows[0];
}

/** Cancels a pending verification; undefined when it was not pending. */
export async function cancelVerification(
  pool: pg.Pool,
  team: string,
  id: string,
): Promise<VerificationRow | undefined> {
  const { rows } = await pool.query<VerificationRow>(
    `UPDATE verifications SET status = 'canceled', updated_at = now()
      WHERE team = $1 AND id = $2 AND status = 'pending' AND expires_at > now()
      RETURNING ${COLUMNS}`,
    [team, id],
  );
  return rows[0];
}

/** Marks every pending verification past its expiry as expired (the periodic sweep); returns how many. */
export async function expireVerifications(pool: pg.Pool): Promise<number> {
  const { rowCount } = await pool.query(
    `UPDATE verifications SET status = 'expired', updated_at = now()
      WHERE id IN (SELECT id FROM verifications WHERE status = 'pending' AND expires_at <= now() LIMIT 1000)`,
  );
  return rowCount ?? 0;
}

export interface VerificationMessage {
  uuid: string;
  status: string;
  createdAt: string;
}

/** The messages sent for a verification, oldest first, with their delivery status. */
export async function verificationMessages(pool: pg.Pool, id: string): Promise<VerificationMessage[]> {
  const { rows } = await pool.query<VerificationMessage>(
    `SELECT uuid, status::text AS status, otp_iso(created_at) AS "createdAt"
       FROM messages WHERE verification_id = $1 ORDER BY created_at, uuid`,
    [id],
  );
  return rows;
}
