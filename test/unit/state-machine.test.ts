import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { decide, TRANSITIONS } from "../../src/tracking/state-machine.ts";
import { STATUSES, type Status } from "../../src/tracking/status.ts";
import { byRank, foldEvents, HISTORIES, type HistoryEvent, timestampsFor } from "../support/webhook.ts";

// The transition table (docs/state-machine.md), written out cell by cell. `decide` only sees a status not seen before for the
// message, so the cells marked * in the table (PENDING arriving later) are `stale` here; over HTTP they
// are `duplicate` because the PENDING event exists (asserted in webhooks.receive.test.ts).
const TABLE: Record<Status, Record<Status, string>> = {
  PENDING: {
    PENDING: "duplicate",
    SENT: "applied",
    DELIVERED: "applied",
    READ: "applied",
    FAILED: "applied",
    EXPIRED: "applied",
  },
  SENT: {
    PENDING: "stale",
    SENT: "duplicate",
    DELIVERED: "applied",
    READ: "applied",
    FAILED: "applied",
    EXPIRED: "applied",
  },
  DELIVERED: {
    PENDING: "stale",
    SENT: "stale",
    DELIVERED: "duplicate",
    READ: "applied",
    FAILED: "rejected",
    EXPIRED: "rejected",
  },
  READ: {
    PENDING: "stale",
    SENT: "stale",
    DELIVERED: "stale",
    READ: "duplicate",
    FAILED: "rejected",
    EXPIRED: "rejected",
  },
  FAILED: {
    PENDING: "stale",
    SENT: "stale",
    DELIVERED: "rejected",
    READ: "rejected",
    FAILED: "duplicate",
    EXPIRED: "rejected",
  },
  EXPIRED: {
    PENDING: "stale",
    SENT: "stale",
    DELIVERED: "rejected",
    READ: "rejected",
    FAILED: "rejected",
    EXPIRED: "duplicate",
  },
};

const cells = STATUSES.flatMap((current) => STATUSES.map((incoming) => [current, incoming] as const));

describe("decide(current, incoming)", () => {
  it.each(cells)("when the message is %s and %s arrives, then it follows the transition table", (current, incoming) => {
    expect(decide(current, incoming)).toBe(TABLE[current][incoming]);
  });

  it("when the SQL's TRANSITIONS are listed, then they are the same 36 cells", () => {
    expect(TRANSITIONS).toHaveLength(36);
    for (const [current, incoming, decision] of TRANSITIONS) expect(decision).toBe(TABLE[current][incoming]);
  });
});

/** A real history with its events shuffled and some repeated (a repeat carries the same timestamp). */
const shuffledHistory = fc
  .tuple(fc.constantFrom(...HISTORIES), fc.integer({ min: 120, max: 86_400 }))
  .chain(([statuses, ago]) => {
    const history = timestampsFor(statuses, ago);
    return fc
      .array(fc.constantFrom(...history), { maxLength: 4 })
      .chain((repeats) => {
        // A webhook PENDING is a repeat of the message's own PENDING event.
        const all: HistoryEvent[] = [...history, ...repeats];
        return fc.tuple(
          fc.constant(history),
          fc.shuffledSubarray(all, { minLength: all.length, maxLength: all.length }),
          fc.boolean(),
        );
      })
      .map(([h, events, withPending]) =>
        withPending
          ? { history: h, events: [{ status: "PENDING" as Status, at: new Date(0) }, ...events] }
          : { history: h, events },
      );
  });

describe("processing one message's events in any order", () => {
  it("when a real history arrives shuffled and with repeats, then the final status and timestamps equal rank order", () => {
    fc.assert(
      fc.property(shuffledHistory, ({ history, events }) => {
        expect(foldEvents(events)).toEqual(foldEvents(byRank(history)));
      }),
      { numRuns: 2000 },
    );
  });

  it("when DELIVERED and FAILED both arrive, then the first one wins (the table is order-dependent there)", () => {
    const [sent, delivered, failed] = timestampsFor(["SENT", "DELIVERED", "FAILED"], 600) as HistoryEvent[] as [
      HistoryEvent,
      HistoryEvent,
      HistoryEvent,
    ];
    expect(foldEvents([sent, delivered, failed]).status).toBe("DELIVERED");
    expect(foldEvents([sent, failed, delivered]).status).toBe("FAILED");
  });
});
