import type pg from "pg";
import type { Logger } from "pino";
import type { Betatel, DeliveryRecord } from "../betatel/client.ts";
import { toDate, toStatus } from "../betatel/delivery-record.ts";
import { BetatelError } from "../betatel/errors.ts";
import type { MessageNotifier } from "../live/notifier.ts";
import type { Status } from "../messages/status.ts";
import { applyStatusEvents, type StatusEvent } from "../webhooks/apply.ts";

export interface ReconcilerOptions {
  pool: pg.Pool;
  betatel: Betatel;
  logger: Logger;
  notifier?: MessageNotifier;
  /** Age after which a PENDING or SENT message is checked (RECONCILE_AFTER_MS). */
  afterMs: number;
  /** Age after which expiry takes over (EXPIRE_AFTER_MS); 0: no upper age. */
  expireAfterMs: number;
  /** Messages claimed per run (RECONCILE_BATCH_SIZE). */
  batchSize: number;
  /**
   * How long a claim holds at least: no other instance checks the message before then. A run stops asking
   * Betatel after half of it and hands back what it did not reach.
   */
  leaseMs?: number;
  /** Longest wait between two checks of one message. */
  maxCheckIntervalMs?: number;
  now?: () => Date;
}

export interface ReconcileSummary {
  claimed: number;
  checked: number;
  applied: number;
  unchanged: number;
  notFound: number;
  unknownStatus: number;
  errors: number;
  /** Set when Betatel said "not now" (429, 5xx, timeout, unreachable, refused credentials): the run stopped. */
  backoff?: { reason: string; retryAfterMs?: number };
}

interface Claimed {
  uuid: string;
  status: Status;
}

/**
 * Claims due messages: unresolved, older than `afterMs` (and younger than the expiry age), not claimed or
 * scheduled for later. SKIP LOCKED passes over rows another instance is claiming at this moment, and the new
 * `next_check_at` keeps them away from everyone until then; the next check of a message that stays
 * unresolved is spaced out exponentially (RECONCILE_AFTER_MS, twice that, ... at most maxCheckIntervalMs).
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
  check_count = m.check_count + 1,
  last_checked_at = $1,
  next_check_at = $1::timestamptz + make_interval(secs => GREATEST($5::float8,
    LEAST($7::float8, $6::float8 * power(2, LEAST(m.check_count, 16)))) / 1000)
FROM due WHERE m.uuid = due.uuid
RETURNING m.uuid, m.status`;

/** Hands claimed messages back (Betatel could not be asked): due again at the next run. */
const RELEASE = `UPDATE messages SET next_check_at = NULL
  WHERE uuid = ANY($1::text[]) AND status IN ('PENDING', 'SENT')`;

/** The WDR as an event payload: Betatel's field names, never the OTP text (the record has none). */
function payloadOf(record: DeliveryRecord) {
  return {
    uuid: record.uuid,
    wam_id: record.wamId,
    to: record.to,
    status: record.status,
    timestamp: record.timestamp,
    delivery_timestamp: record.deliveryTimestamp,
    delivery_time: record.deliveryTime,
    webhook_delivered: record.webhookDelivered,
  };
}

function eventFor(uuid: string, status: Status, record: DeliveryRecord): StatusEvent {
  const occurredAt =
    status === "SENT" ? toDate(record.timestamp) : status === "DELIVERED" ? toDate(record.deliveryTimestamp) : null;
  return {
    uuid,
    status,
    occurredAt,
    source: "reconcile",
    payload: { wdr: payloadOf(record) },
    errorCode: null,
    errorMessage: null,
    wamId: record.wamId,
  };
}

/** Whether a Betatel failure means "stop asking for now" rather than "this one message is odd". */
function backoffReason(error: BetatelError): string | undefined {
  if (error.status === 429) return "rate_limited";
  if (error.failure === "auth_failed") return "auth_failed";
  if (error.failure === "timeout" || error.failure === "unavailable") return error.failure;
  return undefined;
}

/**
 * Asks Betatel's WDR about messages whose webhooks seem lost and applies what it says through the state
 * machine (source `reconcile`). `runOnce` is one pass: claim a batch, ask one message at a time, apply.
 */
export function createReconciler(options: ReconcilerOptions) {
  const now = options.now ?? (() => new Date());
  const leaseMs = options.leaseMs ?? 10 * 60_000;
  const maxCheckIntervalMs = options.maxCheckIntervalMs ?? 2 * 60 * 60_000;

  async function claim(at: Date): Promise<Claimed[]> {
    const dueBefore = new Date(at.getTime() - options.afterMs);
    const expiredBefore = options.expireAfterMs > 0 ? new Date(at.getTime() - options.expireAfterMs) : null;
    const { rows } = await options.pool.query<Claimed>(CLAIM_DUE, [
      at,
      dueBefore,
      expiredBefore,
      options.batchSize,
      leaseMs,
      Math.max(options.afterMs, 1000),
      maxCheckIntervalMs,
    ]);
    return rows;
  }

  async function runOnce(): Promise<ReconcileSummary> {
    const startedAt = Date.now();
    const summary: ReconcileSummary = {
      claimed: 0,
      checked: 0,
      applied: 0,
      unchanged: 0,
      notFound: 0,
      unknownStatus: 0,
      errors: 0,
    };
    const claimed = await claim(now());
    summary.claimed = claimed.length;
    const events: StatusEvent[] = [];
    let handedBack: string[] = [];

    for (const [index, message] of claimed.entries()) {
      if (Date.now() - startedAt > leaseMs / 2) {
        handedBack = claimed.slice(index).map((m) => m.uuid);
        break;
      }
      let record: DeliveryRecord | null;
      try {
        record = await options.betatel.getDeliveryRecord(message.uuid);
      } catch (error) {
        if (!(error instanceof BetatelError)) throw error;
        const reason = backoffReason(error);
        if (reason) {
          summary.backoff = { reason, retryAfterMs: error.retryAfterMs };
          handedBack = claimed.slice(index).map((m) => m.uuid);
          break;
        }
        summary.errors++;
        continue;
      }
      summary.checked++;
      const status = record && toStatus(record.status);
      if (!record) summary.notFound++;
      else if (!status) summary.unknownStatus++;
      else if (status === message.status) summary.unchanged++;
      else events.push(eventFor(message.uuid, status, record));
    }

    if (handedBack.length > 0) await options.pool.query(RELEASE, [handedBack]);
    if (events.length > 0) {
      const { outcomes } = await applyStatusEvents(options.pool, events);
      summary.applied = outcomes.filter((outcome) => outcome === "applied").length;
      summary.unchanged += outcomes.length - summary.applied;
      options.notifier?.published(events.filter((_, i) => outcomes[i] === "applied").map((e) => e.uuid));
    }

    const level = summary.claimed > 0 || summary.backoff ? "info" : "debug";
    options.logger[level]({ reconcile: summary }, "reconcile run");
    return summary;
  }

  return { runOnce };
}

export type Reconciler = ReturnType<typeof createReconciler>;
