import type pg from "pg";
import type { Logger } from "pino";
import type { MessageNotifier } from "../live/notifier.ts";
import { changedUuids } from "../live/publish.ts";
import { applyStatusEvents, type StatusEvent } from "../tracking/apply.ts";
import { findOverdueMessages } from "./repository.ts";

export interface ExpiryOptions {
  pool: pg.Pool;
  logger: Logger;
  notifier?: MessageNotifier;
  /** Age after which a still PENDING or SENT message becomes EXPIRED (EXPIRE_AFTER_MS); 0: never. */
  expireAfterMs: number;
  batchSize: number;
  /** Batches per run at most, so one run stays short; the rest waits for the next run. */
  maxBatches?: number;
  now?: () => Date;
}

/**
 * Ends messages that never resolved: EXPIRED (source `expiry`) through the same state machine, so a status
 * that lands at the same moment wins or loses exactly as the transition table says. Set-based, in batches.
 */
export function createExpiry(options: ExpiryOptions) {
  const now = options.now ?? (() => new Date());
  const maxBatches = options.maxBatches ?? 20;

  async function runOnce(): Promise<{ expired: number }> {
    if (options.expireAfterMs <= 0) return { expired: 0 };
    const at = now();
    const cutoff = new Date(at.getTime() - options.expireAfterMs);
    let expired = 0;
    for (let batch = 0; batch < maxBatches; batch++) {
      const overdue = await findOverdueMessages(options.pool, cutoff, options.batchSize);
      if (overdue.length === 0) break;
      const events: StatusEvent[] = overdue.map((uuid) => ({
        uuid,
        status: "EXPIRED",
        occurredAt: at,
        source: "expiry",
        payload: { reason: "no final status from Betatel in time", expireAfterMs: options.expireAfterMs },
        errorCode: null,
        errorMessage: null,
        wamId: null,
      }));
      const { outcomes, settled } = await applyStatusEvents(options.pool, events);
      expired += outcomes.filter((outcome) => outcome === "applied").length;
      // Every change a reader can see, not only the expiries (a status that won the race adds an event too).
      const results = events.map((event, i) => ({ uuid: event.uuid, outcome: outcomes[i] }));
      options.notifier?.published(changedUuids(results, settled));
      if (overdue.length < options.batchSize) break;
    }
    if (expired > 0) options.logger.info({ expired, expireAfterMs: options.expireAfterMs }, "expired messages");
    return { expired };
  }

  return { runOnce };
}

export type Expiry = ReturnType<typeof createExpiry>;
