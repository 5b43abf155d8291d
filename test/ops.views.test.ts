import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Database } from "../src/db/database.ts";
import { openIsolatedDatabase } from "./support/isolated-database.ts";
import { insertMessage, plus } from "./support/message-rows.ts";

// The views aggregate whole tables: this file uses a database of its own, so every number is known.
let db: Database;
beforeAll(async () => {
  db = await openIsolatedDatabase(2);
});
afterAll(() => db.close());

const HOUR = new Date("2026-01-05T10:00:00Z");
const MINUTE = 60_000;
const SECOND = 1000;

/** A message created at `createdAt`, sent 1 s later, delivered `toDelivered` s after sending, read `toRead` s after that. */
const aReadMessage = (createdAt: Date, toDelivered: number, toRead: number) => {
  const sentAt = plus(createdAt, SECOND);
  const deliveredAt = plus(sentAt, toDelivered * SECOND);
  return insertMessage(db.pool, {
    status: "READ",
    createdAt,
    sentAt,
    deliveredAt,
    readAt: plus(deliveredAt, toRead * SECOND),
  });
};

describe("dashboard views", () => {
  beforeAll(async () => {
    await aReadMessage(plus(HOUR, 5 * MINUTE), 1, 10);
    await aReadMessage(plus(HOUR, 6 * MINUTE), 2, 20);
    await aReadMessage(plus(HOUR, 7 * MINUTE), 3, 30);
    await aReadMessage(plus(HOUR, 59 * MINUTE), 4, 40);
    await insertMessage(db.pool, {
      status: "FAILED",
      createdAt: plus(HOUR, 8 * MINUTE),
      sentAt: plus(HOUR, 8 * MINUTE),
      failedAt: new Date("2026-01-05T23:59:59Z"),
      errorCode: "131026",
      errorMessage: "Message undeliverable",
    });
    await insertMessage(db.pool, {
      status: "FAILED",
      createdAt: plus(HOUR, 60 * MINUTE),
      failedAt: new Date("2026-01-05T12:00:00Z"),
      errorCode: "131026",
      errorMessage: "Message undeliverable",
    });
    await insertMessage(db.pool, {
      status: "FAILED",
      createdAt: plus(HOUR, 61 * MINUTE),
      failedAt: new Date("2026-01-06T00:00:00Z"),
      errorCode: "470",
      errorMessage: "Re-engagement message",
    });
    await insertMessage(db.pool, { status: "PENDING", createdAt: plus(HOUR, 62 * MINUTE) });
  });

  it("ops_messages_per_hour counts messages per UTC hour of creation and current status", async () => {
    const { rows } = await db.pool.query(
      `SELECT to_char(hour AT TIME ZONE 'UTC', 'HH24:MI') AS hour, status, messages::int
       FROM ops_messages_per_hour WHERE hour >= '2026-01-05' AND hour < '2026-01-06' ORDER BY hour, status`,
    );
    expect(rows).toEqual([
      { hour: "10:00", status: "READ", messages: 4 },
      { hour: "10:00", status: "FAILED", messages: 1 },
      { hour: "11:00", status: "PENDING", messages: 1 },
      { hour: "11:00", status: "FAILED", messages: 2 },
    ]);
  });

  it("every view carries the team, and ops_messages_per_hour counts each team apart", async () => {
    const day = new Date("2026-02-01T08:00:00Z");
    const rows = [
      await insertMessage(db.pool, { createdAt: day }),
      await insertMessage(db.pool, { createdAt: plus(day, MINUTE) }),
      await insertMessage(db.pool, { createdAt: plus(day, 2 * MINUTE) }),
    ];
    await db.pool.query("UPDATE messages SET team = 'growth' WHERE uuid = ANY($1)", [rows.slice(1).map((r) => r.uuid)]);

    const perHour = await db.pool.query(
      `SELECT team, status, messages::int FROM ops_messages_per_hour WHERE hour = '2026-02-01T08:00:00Z' ORDER BY team`,
    );
    expect(perHour.rows).toEqual([
      { team: "default", status: "PENDING", messages: 1 },
      { team: "growth", status: "PENDING", messages: 2 },
    ]);
    for (const view of [
      "ops_messages_per_hour",
      "ops_latency_per_hour",
      "ops_failure_reasons_per_day",
      "ops_stuck_messages",
    ]) {
      const { fields } = await db.pool.query(`SELECT * FROM ${view} LIMIT 0`);
      expect(
        fields.map((field) => field.name),
        view,
      ).toContain("team");
    }
  });

  it("ops_latency_per_hour gives delivery and read latency percentiles of the messages that got there", async () => {
    const { rows } = await db.pool.query(
      `SELECT messages::int, delivered::int, delivery_p50_s, delivery_p90_s, delivery_p99_s, read::int, read_p50_s, read_p90_s
       FROM ops_latency_per_hour WHERE hour = '2026-01-05T10:00:00Z'`,
    );
    expect(rows).toHaveLength(1);
    const row = rows[0];
    expect(row).toMatchObject({ messages: 5, delivered: 4, read: 4 });
    // percentile_cont interpolates: over 1, 2, 3, 4 s the median is 2.5 s and p90 3.7 s.
    expect(row.delivery_p50_s).toBeCloseTo(2.5, 6);
    expect(row.delivery_p90_s).toBeCloseTo(3.7, 6);
    expect(row.delivery_p99_s).toBeCloseTo(3.97, 6);
    expect(row.read_p50_s).toBeCloseTo(25, 6);
    expect(row.read_p90_s).toBeCloseTo(37, 6);
  });

  it("ops_failure_reasons_per_day counts failures per UTC day of failure and reason", async () => {
    const { rows } = await db.pool.query(
      `SELECT to_char(day AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day, error_code, error_message, messages::int
       FROM ops_failure_reasons_per_day WHERE day >= '2026-01-05' AND day < '2026-01-07' ORDER BY day, error_code`,
    );
    expect(rows).toEqual([
      { day: "2026-01-05", error_code: "131026", error_message: "Message undeliverable", messages: 2 },
      { day: "2026-01-06", error_code: "470", error_message: "Re-engagement message", messages: 1 },
    ]);
  });

  it("ops_stuck_messages lists PENDING and SENT messages, filtered by age", async () => {
    const now = Date.now();
    const oldPending = await insertMessage(db.pool, { status: "PENDING", createdAt: new Date(now - 20 * MINUTE) });
    const oldSent = await insertMessage(db.pool, {
      status: "SENT",
      createdAt: new Date(now - 16 * MINUTE),
      sentAt: new Date(now - 15 * MINUTE),
    });
    await insertMessage(db.pool, { status: "PENDING", createdAt: new Date(now - MINUTE) });
    await insertMessage(db.pool, { status: "DELIVERED", createdAt: new Date(now - 60 * MINUTE) });

    const { rows } = await db.pool.query(
      `SELECT uuid, status, extract(epoch FROM in_status_for)::int / 60 AS minutes_in_status
       FROM ops_stuck_messages WHERE age > interval '10 minutes' AND created_at > now() - interval '1 day'
       ORDER BY age DESC`,
    );
    expect(rows).toEqual([
      { uuid: oldPending.uuid, status: "PENDING", minutes_in_status: 20 },
      { uuid: oldSent.uuid, status: "SENT", minutes_in_status: 15 },
    ]);
  });
});
