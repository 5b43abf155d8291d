import type { Logger } from "pino";
import type { Betatel, DeliveryRecord } from "../betatel/client.ts";
import { toStatus } from "../betatel/delivery-record.ts";
import { BetatelError } from "../betatel/errors.ts";
import type { Database } from "../db/database.ts";
import type { MessageNotifier } from "../live/notifier.ts";
import { createMessage } from "../messages/repository.ts";
import { maskPhone } from "../phone/phone.ts";
import { applyStatusEvents } from "../tracking/apply.ts";
import { toDate } from "../tracking/event-time.ts";
import { eventsFor } from "./reconciler.ts";
import { claimOrphans, forgetSettledOrphans, handBackOrphans } from "./repository.ts";

/** The team of a message adopted from Betatel's delivery record: not a valid team name, so no key has it. */
export const ADOPTED_TEAM = "(adopted)";

export interface OrphanSummary {
  claimed: number;
  adopted: number;
  /** Betatel answered 404. */
  unknown: number;
  /** The record could not be had (5xx, unreadable). */
  errors: number;
  /** Set when Betatel said "not now" (429, timeout, unreachable, refused credentials): the run stopped. */
  backoff?: string;
}

export interface OrphanAdoptionOptions {
  db: Database;
  betatel: Betatel;
  logger: Logger;
  notifier?: MessageNotifier;
  /** Age of a uuid's oldest buffered status after which Betatel is asked about it (ORPHAN_ADOPT_AFTER_MS); 0: never. */
  afterMs: number;
  /** Uuids asked about per run. */
  batchSize: number;
  /** Longest wait before asking Betatel again about a uuid it did not know. */
  maxRecheckMs?: number;
  /** Counts each adopted message (`otp_orphans_adopted_total`). */
  onAdopted?: () => void;
  now?: () => Date;
}

/**
 * Orphan adoption: statuses that wait for a message row which never came (Betatel sent the OTP but we could
 * not store it). Betatel's delivery record is asked for each such uuid; if Betatel knows it, the message row
 * is created from the record (number, send time; source `reconcile`, OTP length unknown), its buffered
 * statuses are settled and the record's own status applied. A uuid Betatel does not know is left to
 * retention and asked about again later, less often each time.
 */
export function createOrphanAdoption(options: OrphanAdoptionOptions) {
  const now = options.now ?? (() => new Date());
  const maxRecheckMs = options.maxRecheckMs ?? 6 * 60 * 60_000;
  const recheckMs = Math.max(options.afterMs, 60_000);

  async function adopt(uuid: string, record: DeliveryRecord): Promise<void> {
    const to = (record.to ?? "").replace(/\D/g, "").slice(0, 32);
    const sentAt = toDate(record.timestamp) ?? undefined;
    // Creating the row settles the buffered statuses in the same transaction, as for a message we sent.
    await createMessage(options.db, {
      uuid,
      to,
      textLength: null,
      source: "reconcile",
      // Betatel's record does not say which team sent it: a name no key can have, so no team reads it.
      team: ADOPTED_TEAM,
      createdAt: sentAt,
      requestedAt: sentAt,
    });
    const status = toStatus(record.status);
    if (status) await applyStatusEvents(options.db.pool, eventsFor(uuid, status, record));
    options.notifier?.published([uuid]);
    options.onAdopted?.();
    options.logger.warn(
      { uuid, to: maskPhone(to), status: record.status },
      "adopted a message known only from its buffered statuses",
    );
  }

  /** One pass; `backoff` set when Betatel said "not now" (the uuids not asked yet are handed back). */
  async function runOnce(): Promise<OrphanSummary> {
    const summary: OrphanSummary = { claimed: 0, adopted: 0, unknown: 0, errors: 0 };
    if (options.afterMs <= 0) return summary;
    const at = now();
    await forgetSettledOrphans(options.db.pool);
    const claimed = await claimOrphans(options.db.pool, {
      at,
      bufferedBefore: new Date(at.getTime() - options.afterMs),
      limit: options.batchSize,
      recheckMs,
      maxRecheckMs,
    });
    summary.claimed = claimed.length;
    for (const [index, uuid] of claimed.entries()) {
      let record: DeliveryRecord | null;
      try {
        record = await options.betatel.getDeliveryRecord(uuid);
      } catch (error) {
        if (!(error instanceof BetatelError)) throw error;
        // A 5xx or unreadable record costs only this uuid (asked again on its schedule); anything else is
        // Betatel's trouble: stop, and the uuids not asked yet are due again at the next run.
        if (error.failure === "unavailable" && error.status !== undefined && error.status !== 429) {
          summary.errors++;
          continue;
        }
        summary.backoff = error.failure;
        await handBackOrphans(options.db.pool, claimed.slice(index + 1));
        break;
      }
      if (!record) {
        summary.unknown++;
        continue;
      }
      await adopt(uuid, record);
      summary.adopted++;
    }
    if (summary.claimed > 0) options.logger.info({ orphans: summary }, "orphan adoption run");
    return summary;
  }

  return { runOnce };
}

export type OrphanAdoption = ReturnType<typeof createOrphanAdoption>;
