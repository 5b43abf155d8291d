import { RANK, STATUSES, type Status } from "./status.ts";

/** What happened to one incoming status, as the webhook answers it. */
export type Outcome = "applied" | "duplicate" | "stale" | "rejected" | "buffered" | "invalid";

/** Outcomes `decide` can return: the others come from dedup (`duplicate`), a missing row or validation. */
export type Decision = "applied" | "duplicate" | "stale" | "rejected";

/**
 * The transition table of the state machine (docs/state-machine.md), for an incoming status not seen before for this message
 * (dedup on (uuid, status) runs first, so a repeat never reaches this function).
 */
export function decide(current: Status, incoming: Status): Decision {
  if (incoming === current) return "duplicate";
  // The PENDING event is recorded at creation; one that is somehow missing only back-fills (footnote *).
  if (incoming === "PENDING") return "stale";
  const currentRank = RANK[current];
  const incomingRank = RANK[incoming];
  if (currentRank !== undefined && incomingRank !== undefined) {
    // Both on the delivery path: forward moves, backward back-fills. Skipping ahead is normal.
    return incomingRank > currentRank ? "applied" : "stale";
  }
  if (currentRank === undefined) {
    // FAILED or EXPIRED already: only the earlier SENT can still fill its timestamp.
    return incoming === "SENT" ? "stale" : "rejected";
  }
  // FAILED or EXPIRED arriving: it ends a message not yet delivered and contradicts one that was.
  return currentRank <= 1 ? "applied" : "rejected";
}

/** All 36 (current, incoming) pairs with their decision: the SQL applies exactly this table. */
export const TRANSITIONS: ReadonlyArray<readonly [Status, Status, Decision]> = STATUSES.flatMap((current) =>
  STATUSES.map((incoming) => [current, incoming, decide(current, incoming)] as const),
);
