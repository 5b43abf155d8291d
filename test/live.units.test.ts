import { describe, expect, it } from "vitest";
import { parseRetryAfter } from "../src/betatel/client.ts";
import { toStatus } from "../src/betatel/delivery-record.ts";
import { changedUuids } from "../src/live/publish.ts";
import { hasReached } from "../src/live/wait.ts";
import { eventTimeMillis, toDate } from "../src/tracking/event-time.ts";
import { STATUSES, type Status } from "../src/tracking/status.ts";

describe("hasReached (long-poll)", () => {
  const reachedBy = (wanted: Status) => STATUSES.filter((current) => hasReached(current, wanted));

  it("ends a wait for DELIVERED on DELIVERED, READ and any final status", () => {
    expect(reachedBy("DELIVERED")).toEqual(["DELIVERED", "READ", "FAILED", "EXPIRED"]);
  });
  it("ends a wait for SENT on SENT and later", () => {
    expect(reachedBy("SENT")).toEqual(["SENT", "DELIVERED", "READ", "FAILED", "EXPIRED"]);
  });
  it("ends a wait for FAILED only on a final status", () => {
    expect(reachedBy("FAILED")).toEqual(["READ", "FAILED", "EXPIRED"]);
  });
  it("answers a wait for PENDING at once", () => {
    expect(reachedBy("PENDING")).toEqual(STATUSES);
  });
});

describe("changedUuids (what is announced to live status)", () => {
  it("announces applied, stale and rejected outcomes and settled buffered statuses, once each; never duplicates", () => {
    const results = ["applied", "stale", "rejected", "duplicate", "buffered", "invalid", "applied"].map(
      (outcome, i) => ({ uuid: i === 6 ? "u0" : `u${i}`, outcome }),
    );
    expect(changedUuids(results, ["u3"]).sort()).toEqual(["u0", "u1", "u2", "u3"]);
    expect(changedUuids([{ uuid: null, outcome: "applied" }])).toEqual([]);
  });
});

describe("WDR reading", () => {
  it("maps Betatel's status words case-insensitively and ignores unknown ones", () => {
    expect(["DELIVERED", "Read", " sent ", "failed", "undelivered", "expired"].map(toStatus)).toEqual([
      "DELIVERED",
      "READ",
      "SENT",
      "FAILED",
      "FAILED",
      "EXPIRED",
    ]);
    expect(toStatus("warming_up")).toBeUndefined();
    expect(toStatus(null)).toBeUndefined();
  });

  it("reads times as ISO 8601, Unix seconds or milliseconds", () => {
    const iso = "2026-11-27T10:00:03.000Z";
    const ms = Date.parse(iso);
    expect([iso, ms, ms / 1000, String(ms / 1000)].map((value) => toDate(value)?.toISOString())).toEqual([
      iso,
      iso,
      iso,
      iso,
    ]);
    expect(toDate("yesterday")).toBeNull();
    // One rule with the webhook's timestamp: a time without a zone is not read (which zone would it be?).
    expect(eventTimeMillis("2026-11-27T10:00:03")).toBeTypeOf("string");
    expect(toDate("2026-11-27T10:00:03")).toBeNull();
    expect(toDate("Fri, 27 Nov 2026 10:00:03 GMT")).toBeNull();
    // Out of range, as the webhook refuses them: the time it was received stands in.
    expect(toDate("1970-01-02T00:00:00Z")).toBeNull();
    expect(toDate(Date.now() + 7 * 86_400_000)).toBeNull();
    expect(toDate(null)).toBeNull();
  });

  it("reads Retry-After as seconds or an HTTP date", () => {
    const now = Date.parse("2026-11-27T10:00:00Z");
    expect(parseRetryAfter("3", now)).toBe(3000);
    expect(parseRetryAfter("Fri, 27 Nov 2026 10:00:10 GMT", now)).toBe(10_000);
    expect(parseRetryAfter("soon", now)).toBeUndefined();
    expect(parseRetryAfter(null, now)).toBeUndefined();
  });
});
