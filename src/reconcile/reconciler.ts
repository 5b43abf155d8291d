import type pg from "pg";
import type { Logger } from "pino";
import type { Betatel, DeliveryRecord } from "../betatel/client.ts";
import { toStatus } from "../betatel/delivery-record.ts";
import { BetatelError } from "../betatel/errors.ts";
import type { MessageNotifier } from "../live/notifier.ts";
import { changedUuids } from "../live/publish.ts";
import { applyStatusEvents, errorReason, type StatusEvent } from "../tracking/apply.ts";
import { toDate } from "../tracking/event-time.ts";
import type { Status } from "../tracking/status.ts";
import {
  type ClaimedMessage,
  claimDueMessages,
  recordChecked,
  recordCheckFailed,
  releaseClaims,
} from "./repository.ts";

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
  /** Counts each message's check by result (`otp_reconcile_checks_total`). */
  onCheck?: (result: CheckResult) => void;
  now?: () => Date;
}

export type CheckResult = "applied" | "unchanged" | "not_found" | "unknown_status" | "error";

export interface ReconcileSummary {
  claimed: number;
  checked: number;
  applied: number;
  unchanged: number;
  notFound: number;
  unknownStatus: number;
  /** Records that could not be had (unreadable, 5xx, timeout): each costs only its own message. */
  errors: number;
  /** Set when Betatel said "not now" (429, timeout, unreachable, refused credentials, or several 5xx in a row): the run stopped. */
  backoff?: { reason: string; retryAfterMs?: number };
}

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

/** The statuses a record implies, oldest first: a message read was also sent and delivered. */
const IMPLIED: Partial<Record<Status, Status[]>> = {
  SENT: ["SENT"],
  DELIVERED: ["SENT", "DELIVERED"],
  READ: ["SENT", "DELIVERED", "READ"],
};

/**
 * The events a record stands for, through the state machine like webhooks (source `reconcile`): the status
 * it names, and the earlier ones it implies with the record's own times (`timestamp` sent,
 * `delivery_timestamp` delivered), so a record that says `read` also back-fills SENT and DELIVERED. A
 * failed record carries its reason (Betatel's, or a plain one when it gives none).
 */
export function eventsFor(uuid: string, status: Status, record: DeliveryRecord): StatusEvent[] {
  const reason = status === "FAILED" ? failureReason(record) : { code: null, message: null };
  return (IMPLIED[status] ?? [status]).map((each) => ({
    uuid,
    status: each,
    occurredAt:
      each === "SENT" ? toDate(record.timestamp) : each === "DELIVERED" ? toDate(record.deliveryTimestamp) : null,
    source: "reconcile",
    payload: { wdr: { ...payloadOf(record), ...(status === "FAILED" ? { error: reason } : {}) } },
    errorCode: each === "FAILED" ? reason.code : null,
    errorMessage: each === "FAILED" ? reason.message : null,
    wamId: record.wamId,
  }));
}

function failureReason(record: DeliveryRecord): { code: string | null; message: string | null } {
  const given = errorReason(record.error);
  if (given.code || given.message) return given;
  return { code: "wdr_failed", message: `Betatel's delivery record says ${String(record.status).slice(0, 50)}` };
}

/**
 * Whether a Betatel failure means "stop asking for now" rather than "this one record is bad". A 5xx or an
 * unreadable record is about one record (it must not hold up the rest); no answer at all, a 429 or refused
 * credentials are about Betatel. `ownFault`: the message itself is backed off too (a timeout may be its
 * record being slow); a 429 or refused credentials say nothing about the message.
 */
function backoffReason(error: BetatelError): { reason: string; ownFault: boolean } | undefined {
  if (error.status === 429) return { reason: "rate_limited", ownFault: false };
  if (error.failure === "auth_failed") return { reason: "auth_failed", ownFault: false };
  if (error.failure === "timeout") return { reason: "timeout", ownFault: true };
  if (error.failure === "unavailable" && error.status === undefined) return { reason: "unavailable", ownFault: true };
  return undefined;
}

/** Bad records in a row after which Betatel itself looks down: the run stops and the job backs off. */
const MAX_ERRORS_IN_A_ROW = 3;

/**
 * Asks Betatel's WDR about messages whose webhooks seem lost and applies what it says through the state
 * machine (source `reconcile`). `runOnce` is one pass: claim a batch, ask one message at a time, apply.
 */
export function createReconciler(options: ReconcilerOptions) {
  const now = options.now ?? (() => new Date());
  const leaseMs = options.leaseMs ?? 10 * 60_000;
  const maxCheckIntervalMs = options.maxCheckIntervalMs ?? 2 * 60 * 60_000;

  function claim(at: Date): Promise<ClaimedMessage[]> {
    return claimDueMessages(options.pool, {
      at,
      dueBefore: new Date(at.getTime() - options.afterMs),
      expiredBefore: options.expireAfterMs > 0 ? new Date(at.getTime() - options.expireAfterMs) : null,
      limit: options.batchSize,
      leaseMs,
      baseIntervalMs: Math.max(options.afterMs, 1000),
      maxIntervalMs: maxCheckIntervalMs,
    });
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
    const at = now();
    const claimed = await claim(at);
    summary.claimed = claimed.length;
    const events: StatusEvent[] = [];
    const read: string[] = [];
    const failed: string[] = [];
    let handedBack: string[] = [];
    let errorsInARow = 0;
    const count = (result: CheckResult) => options.onCheck?.(result);

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
        const stop = backoffReason(error);
        if (stop && !stop.ownFault) {
          summary.backoff = { reason: stop.reason, retryAfterMs: error.retryAfterMs };
          handedBack = claimed.slice(index).map((m) => m.uuid);
          break;
        }
        // This record costs only its own message: it keeps its claim's next check, later each time.
        summary.errors++;
        failed.push(message.uuid);
        count("error");
        options.logger.warn(
          { uuid: message.uuid, failure: error.failure, betatelStatus: error.status },
          "delivery record unavailable",
        );
        errorsInARow++;
        if (stop || errorsInARow >= MAX_ERRORS_IN_A_ROW) {
          summary.backoff = { reason: stop?.reason ?? "unavailable", retryAfterMs: error.retryAfterMs };
          handedBack = claimed.slice(index + 1).map((m) => m.uuid);
          break;
        }
        continue;
      }
      errorsInARow = 0;
      summary.checked++;
      read.push(message.uuid);
      const status = record && toStatus(record.status);
      if (!record) {
        summary.notFound++;
        count("not_found");
      } else if (!status) {
        summary.unknownStatus++;
        count("unknown_status");
      } else events.push(...eventsFor(message.uuid, status, record));
    }

    if (read.length > 0) await recordChecked(options.pool, read, at);
    if (failed.length > 0) await recordCheckFailed(options.pool, failed);
    if (handedBack.length > 0) await releaseClaims(options.pool, handedBack);
    if (events.length > 0) {
      const { outcomes, settled } = await applyStatusEvents(options.pool, events);
      const moved = new Set(events.filter((_, i) => outcomes[i] === "applied").map((e) => e.uuid));
      for (const uuid of new Set(events.map((e) => e.uuid))) {
        const result = moved.has(uuid) ? "applied" : "unchanged";
        summary[result]++;
        count(result);
      }
      // Live status: every change a reader can see (a stale back-fill or a rejected event too).
      const results = events.map((event, i) => ({ uuid: event.uuid, outcome: outcomes[i] }));
      options.notifier?.published(changedUuids(results, settled));
    }

    const level = summary.claimed > 0 || summary.backoff ? "info" : "debug";
    options.logger[level]({ reconcile: summary }, "reconcile run");
    return summary;
  }

  return { runOnce };
}

export type Reconciler = ReturnType<typeof createReconciler>;
