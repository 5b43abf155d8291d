import type { Betatel } from "../betatel/client.ts";
import { BetatelError } from "../betatel/errors.ts";
import type { Metrics } from "./metrics.ts";

/**
 * The same Betatel, counted and timed: `result` is `ok` or the failure kind (`rejected`, `auth_failed`,
 * `payment_required`, `unavailable`, `timeout`), or `error` for anything unexpected.
 */
export function instrumentBetatel(
  betatel: Betatel,
  metrics: Pick<Metrics, "betatelCalls" | "betatelDuration">,
): Betatel {
  return {
    async sendOtp(input) {
      const stop = metrics.betatelDuration.startTimer();
      let result = "ok";
      try {
        return await betatel.sendOtp(input);
      } catch (error) {
        result = error instanceof BetatelError ? error.failure : "error";
        throw error;
      } finally {
        metrics.betatelCalls.inc({ result });
        stop({ result });
      }
    },
    // The reconciler's WDR reads are not counted here: the reconciler logs its own runs.
    getDeliveryRecord: (uuid) => betatel.getDeliveryRecord(uuid),
  };
}
