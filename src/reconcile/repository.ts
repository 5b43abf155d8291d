import type pg from "pg";
import type { Status } from "../tracking/status.ts";

// The SQL of reconcile/: expiry, the reconciler's claims and orphan adoption's schedule. Statuses themselves
// are written through tracking/ (the state machine), never here.

const OVERDUE = `SELECT uuid FROM messages
  WHERE status IN ('PENDING', 'SENT') AND created_at <= $1
  ORDER BY created_at LIMIT $2`;

/** Uuids of PENDING or SENT messages created at or before `cutoff`, oldest first, at most `limit`. */
export async function findOverdueMessages(pool: pg.Pool, cutoff: Date, limit: number): Promise<string[]> {
  const { rows } = await pool.query<{ uuid: string }>(OVERDUE, [cutoff, limit]);
  return rows.map((row) => row.uuid);
}

export interface ClaimedMessage {
  uuid: string;
  status: Status;
}

export interface DueClaim {
  at: Date;
  /** Messages created at or before this are due. */
  dueBefore: Date;
  /** Messages created at or before this are left to expiry; null: no upper age. */
  expiredBefore: Date | null;
  limit: number;
  /** The claim holds at least this long. */
  leaseMs: number;
  /** First interval of the exponential spacing of checks. */
  baseIntervalMs: number;
  maxIntervalMs: number;
}

/**
 * Claims due messages: unresolved, older than `afterMs` (and younger than the expiry age), not claimed or
 * scheduled for later. SKIP LOCKED passes over rows another instance is claiming at this moment, and the new
 * `next_check_at` keeps them away from everyone until then; the next check of a message that stays
 * unresolved is spaced out exponentially (RECONCILE_AFTER_MS, twice that, ... at most maxCheckIntervalMs),
 * by the attempts so far: checks and failed checks alike, so a record that keeps failing is asked less often.
 */
const CLAIM_DUE = `WITH due AS (
  SELECT uuid FROM messages
  WHERE status IN ('PENDING', 'SENT')
    AND created_at <= $2
    AND ($3::timestamptz IS NULL OR created_at > $3)
    AND (next_check_at IS NULL OR next_check_at <= $1)
  ORDER BY created_at
  LIMIT $4
  FOR UPDATE SKIP LOCKED
)
UPDATE messages m SET
  next_check_at = $1::timestamptz + make_interval(secs => GREATEST($5::float8,
    LEAST($7::float8, $6::float8 * power(2, LEAST(m.check_count + m.check_failures, 16)))) / 1000)
FROM due WHERE m.uuid = due.uuid
RETURNING m.uuid, m.status`;

/** Claims the messages due for a check (see CLAIM_DUE). */
export async function claimDueMessages(pool: pg.Pool, claim: DueClaim): Promise<ClaimedMessage[]> {
  const { rows } = await pool.query<ClaimedMessage>(CLAIM_DUE, [
    claim.at,
    claim.dueBefore,
    claim.expiredBefore,
    claim.limit,
    claim.leaseMs,
    claim.baseIntervalMs,
    claim.maxIntervalMs,
  ]);
  return rows;
}

/** A record was read: one real check. */
const CHECKED = `UPDATE messages SET check_count = check_count + 1, last_checked_at = $2 WHERE uuid = ANY($1::text[])`;

export async function recordChecked(pool: pg.Pool, uuids: string[], at: Date): Promise<void> {
  await pool.query(CHECKED, [uuids, at]);
}

/** The record could not be had: the message keeps the claim's `next_check_at`, and the next one is later still. */
const CHECK_FAILED = `UPDATE messages SET check_failures = check_failures + 1 WHERE uuid = ANY($1::text[])`;

export async function recordCheckFailed(pool: pg.Pool, uuids: string[]): Promise<void> {
  await pool.query(CHECK_FAILED, [uuids]);
}

/** Hands claimed messages back (Betatel could not be asked): due again at the next run. */
const RELEASE = `UPDATE messages SET next_check_at = NULL
  WHERE uuid = ANY($1::text[]) AND status IN ('PENDING', 'SENT')`;

export async function releaseClaims(pool: pg.Pool, uuids: string[]): Promise<void> {
  await pool.query(RELEASE, [uuids]);
}

export interface OrphanClaim {
  at: Date;
  /** Uuids whose oldest buffered status was received at or before this are due. */
  bufferedBefore: Date;
  limit: number;
  /** Wait after the first ask; it doubles with each ask. */
  recheckMs: number;
  maxRecheckMs: number;
}

/**
 * Claims uuids that have buffered statuses but no message row, whose oldest status is older than `afterMs`,
 * and that are not scheduled for later. The claim is the schedule: `next_check_at` moves ahead (doubling
 * with each ask, at most `$5`), so another instance, or the next run after a 404, leaves them alone.
 */
const CLAIM_ORPHANS = `WITH due AS (
  SELECT e.uuid FROM message_events e
  WHERE e.outcome = 'buffered'
    AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.uuid = e.uuid)
    AND NOT EXISTS (SELECT 1 FROM orphan_checks o WHERE o.uuid = e.uuid AND o.next_check_at > $1)
  GROUP BY e.uuid
  HAVING min(e.received_at) <= $2
  ORDER BY min(e.received_at)
  LIMIT $3
)
INSERT INTO orphan_checks AS o (uuid, attempts, last_checked_at, next_check_at)
SELECT uuid, 1, $1, $1::timestamptz + make_interval(secs => $4::float8 / 1000) FROM due
ON CONFLICT (uuid) DO UPDATE SET
  attempts = o.attempts + 1,
  last_checked_at = $1,
  next_check_at = $1::timestamptz + make_interval(secs => LEAST($5::float8, $4::float8 * power(2, LEAST(o.attempts, 16))) / 1000)
WHERE o.next_check_at <= $1
RETURNING o.uuid`;

/** Claims the orphan uuids due for an ask (see CLAIM_ORPHANS). */
export async function claimOrphans(pool: pg.Pool, claim: OrphanClaim): Promise<string[]> {
  const { rows } = await pool.query<{ uuid: string }>(CLAIM_ORPHANS, [
    claim.at,
    claim.bufferedBefore,
    claim.limit,
    claim.recheckMs,
    claim.maxRecheckMs,
  ]);
  return rows.map((row) => row.uuid);
}

/** Claimed uuids that were not asked after all: due again at once, the claim not counted as an ask. */
const HAND_BACK = `UPDATE orphan_checks SET next_check_at = last_checked_at, attempts = GREATEST(attempts - 1, 0)
  WHERE uuid = ANY($1::text[])`;

export async function handBackOrphans(pool: pg.Pool, uuids: string[]): Promise<void> {
  await pool.query(HAND_BACK, [uuids]);
}

/** Schedules of uuids that no longer have buffered statuses (adopted, or cleaned up by retention). */
const FORGET_SETTLED = `DELETE FROM orphan_checks o WHERE NOT EXISTS (
  SELECT 1 FROM message_events e WHERE e.uuid = o.uuid AND e.outcome = 'buffered')`;

export async function forgetSettledOrphans(pool: pg.Pool): Promise<void> {
  await pool.query(FORGET_SETTLED);
}
