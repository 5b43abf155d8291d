import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { type Database, openDatabase } from "../src/db/database.ts";
import { createLogger } from "../src/http/logging.ts";
import { RETENTION_LOCK, type RetentionOptions, runRetentionOnce, startRetention } from "../src/ops/retention.ts";
import { openIsolatedDatabase } from "./support/isolated-database.ts";
import { insertMessage } from "./support/message-rows.ts";
import { aUuid, LogCapture } from "./support/test-app.ts";
import { embedded } from "./support/test-database.ts";

// Retention deletes by age across whole tables: a database of its own, emptied before each test.
let db: Database;
beforeAll(async () => {
  db = await openIsolatedDatabase(3);
});
afterAll(() => db.close());
beforeEach(async () => {
  await db.pool.query("TRUNCATE messages, message_events, idempotency_keys, callback_endpoints CASCADE");
});

const DAY = 86_400_000;
const daysAgo = (days: number) => new Date(Date.now() - days * DAY);

const options = (overrides: Partial<RetentionOptions> = {}): RetentionOptions => ({
  pool: db.pool,
  logger: createLogger("silent"),
  bufferedRetentionMs: 7 * DAY,
  messageRetentionMs: undefined,
  ...overrides,
});

async function insertEvent(uuid: string, status: string, outcome: string, receivedAt: Date) {
  await db.pool.query(
    `INSERT INTO message_events (uuid, status, outcome, occurred_at, received_at, source)
     VALUES ($1, $2, $3, $4, $4, 'webhook')`,
    [uuid, status, outcome, receivedAt],
  );
}

async function insertIdempotencyKey(key: string, createdAt: Date) {
  await db.pool.query(
    `INSERT INTO idempotency_keys (scope, key, request_hash, created_at) VALUES ('test', $1, 'hash', $2)`,
    [key, createdAt],
  );
}

const eventUuids = async () =>
  (await db.pool.query<{ uuid: string }>("SELECT uuid FROM message_events ORDER BY uuid")).rows.map((r) => r.uuid);
const messageUuids = async () =>
  (await db.pool.query<{ uuid: string }>("SELECT uuid FROM messages ORDER BY uuid")).rows.map((r) => r.uuid);
const idempotencyKeys = async () =>
  (await db.pool.query<{ key: string }>("SELECT key FROM idempotency_keys ORDER BY key")).rows.map((r) => r.key);

describe("retention", () => {
  it("deletes buffered events for unknown uuids older than BUFFERED_RETENTION_MS, in batches, and logs the counts", async () => {
    const old = Array.from({ length: 5 }, () => aUuid());
    for (const uuid of old) await insertEvent(uuid, "DELIVERED", "buffered", daysAgo(8));
    const recent = aUuid();
    await insertEvent(recent, "DELIVERED", "buffered", daysAgo(6));
    // Buffered but its message now exists: it is about to be settled, never deleted.
    const known = await insertMessage(db.pool, { createdAt: daysAgo(1) });
    await insertEvent(known.uuid, "SENT", "buffered", daysAgo(8));
    await insertIdempotencyKey("old-key", new Date(Date.now() - DAY - 60_000));
    await insertIdempotencyKey("fresh-key", new Date(Date.now() - 60_000));
    const logs = new LogCapture();

    const run = await runRetentionOnce(options({ batchSize: 2, logger: createLogger("info", logs) }));

    expect(run).toEqual({
      ran: true,
      removed: {
        bufferedEvents: 5,
        messages: 0,
        messageEvents: 0,
        idempotencyKeys: 1,
        callbackDeliveries: 0,
        limitRows: 0,
      },
    });
    expect(await eventUuids()).toEqual([known.uuid, recent].sort());
    expect(await idempotencyKeys()).toEqual(["fresh-key"]);
    const line = JSON.parse(logs.lines.find((text) => text.includes("retention")) ?? "{}");
    expect(line.removed).toEqual(run.removed);
  });

  it("deletes finished status callbacks after 30 days and keeps pending ones", async () => {
    await db.pool.query(
      "INSERT INTO callback_endpoints (id, team, url) VALUES ('ep_retention', 't', 'https://x.example')",
    );
    for (const [status, days] of [
      ["delivered", 31],
      ["failed", 31],
      ["pending", 31],
      ["delivered", 29],
    ] as const) {
      await db.pool.query(
        `INSERT INTO callback_deliveries (event_id, endpoint_id, team, type, subject, sequence, payload, status, created_at)
         VALUES ($1, 'ep_retention', 't', 'message.status', 's', 2, '{}', $2, $3)`,
        [`${status}-${days}`, status, daysAgo(days)],
      );
    }
    const run = await runRetentionOnce(options());
    expect(run.removed.callbackDeliveries).toBe(2);
    const { rows } = await db.pool.query("SELECT event_id FROM callback_deliveries ORDER BY event_id");
    expect(rows.map((row) => row.event_id)).toEqual(["delivered-29", "pending-31"]);
  });

  it("deletes recipient sends older than any limit window (31 days) and per-key counters of long-ended windows", async () => {
    await db.pool.query(
      `INSERT INTO recipient_sends ("to", team, sent_at) VALUES ('38761000001', 't', $1), ('38761000001', 't', $2), ('38761000001', 't', $3)`,
      [daysAgo(32), daysAgo(33), daysAgo(30)],
    );
    await db.pool.query(
      `INSERT INTO rate_limit_counters (key, hits, reset_at) VALUES ('send:old', 3, now() - interval '2 hours'),
       ('send:now', 1, now() + interval '30 seconds')`,
    );

    const run = await runRetentionOnce(options({ batchSize: 1 }));

    expect(run.removed.limitRows).toBe(3);
    const sends = await db.pool.query(`SELECT sent_at FROM recipient_sends WHERE "to" = '38761000001'`);
    expect(sends.rows).toHaveLength(1);
    const counters = await db.pool.query("SELECT key FROM rate_limit_counters ORDER BY key");
    expect(counters.rows).toEqual([{ key: "send:now" }]);
  });

  it("keeps messages forever when MESSAGE_RETENTION_MS is unset", async () => {
    const ancient = await insertMessage(db.pool, { createdAt: daysAgo(400) });
    await insertEvent(ancient.uuid, "PENDING", "applied", daysAgo(400));

    const run = await runRetentionOnce(options());

    expect(run.removed.messages).toBe(0);
    expect(await messageUuids()).toEqual([ancient.uuid]);
    expect(await eventUuids()).toEqual([ancient.uuid]);
  });

  it("when MESSAGE_RETENTION_MS is set, then older messages go with their events and newer ones stay", async () => {
    const old = [
      await insertMessage(db.pool, { createdAt: daysAgo(31) }),
      await insertMessage(db.pool, { createdAt: daysAgo(40) }),
    ];
    for (const message of old) {
      await insertEvent(message.uuid, "PENDING", "applied", message.createdAt);
      await insertEvent(message.uuid, "SENT", "applied", message.createdAt);
    }
    const kept = await insertMessage(db.pool, { createdAt: daysAgo(29) });
    await insertEvent(kept.uuid, "PENDING", "applied", kept.createdAt);

    const run = await runRetentionOnce(options({ messageRetentionMs: 30 * DAY, batchSize: 1 }));

    expect(run.removed).toMatchObject({ messages: 2, messageEvents: 4 });
    expect(await messageUuids()).toEqual([kept.uuid]);
    expect(await eventUuids()).toEqual([kept.uuid]);
  });

  it.skipIf(embedded)("when another instance holds the retention lock, then this one does nothing", async () => {
    const uuid = aUuid();
    await insertEvent(uuid, "READ", "buffered", daysAgo(30));
    const other = await db.pool.connect();
    try {
      await other.query("SELECT pg_advisory_lock($1)", [RETENTION_LOCK]);
      const run = await runRetentionOnce(options());
      expect(run.ran).toBe(false);
      expect(await eventUuids()).toEqual([uuid]);
    } finally {
      await other.query("SELECT pg_advisory_unlock($1)", [RETENTION_LOCK]);
      other.release();
    }
    expect((await runRetentionOnce(options())).ran).toBe(true);
    expect(await eventUuids()).toEqual([]);
  });

  it.skipIf(embedded)("when two instances run it at the same moment, then exactly one does the work", async () => {
    const uuids = Array.from({ length: 40 }, () => aUuid());
    await db.pool.query(
      `INSERT INTO message_events (uuid, status, outcome, occurred_at, received_at, source)
       SELECT u, 'DELIVERED', 'buffered', now() - interval '30 days', now() - interval '30 days', 'webhook'
       FROM unnest($1::text[]) u`,
      [uuids],
    );
    // A second "instance": its own pool on the same database.
    const second = await openDatabase({ url: db.url, dataDir: "", poolSize: 1 });
    // Connected before the race, like the first: both try the lock at once.
    await second.pool.query("SELECT 1");
    try {
      // Batches of one keep the first pass busy for dozens of statements while the second tries the lock.
      const runs = await Promise.all([
        runRetentionOnce(options({ batchSize: 1 })),
        runRetentionOnce(options({ pool: second.pool, batchSize: 1 })),
      ]);
      expect(runs.map((run) => run.ran).sort()).toEqual([false, true]);
      expect(runs.map((run) => run.removed.bufferedEvents).sort((a, b) => a - b)).toEqual([0, 40]);
      expect(await eventUuids()).toEqual([]);
    } finally {
      await second.close();
    }
  });

  it("startRetention runs a pass at once and then on its interval; the stop function ends it", async () => {
    const first = aUuid();
    await insertEvent(first, "SENT", "buffered", daysAgo(8));
    const stop = startRetention({ ...options(), intervalMs: 50 });
    try {
      await waitFor(async () => (await eventUuids()).length === 0);
      const second = aUuid();
      await insertEvent(second, "SENT", "buffered", daysAgo(8));
      await waitFor(async () => (await eventUuids()).length === 0);
    } finally {
      await stop();
    }
    const third = aUuid();
    await insertEvent(third, "SENT", "buffered", daysAgo(8));
    await sleep(200);
    expect(await eventUuids()).toEqual([third]);
  });

  it("startRetention with interval 0 is off", async () => {
    const uuid = aUuid();
    await insertEvent(uuid, "SENT", "buffered", daysAgo(8));
    const stop = startRetention({ ...options(), intervalMs: 0 });
    await sleep(100);
    await stop();
    expect(await eventUuids()).toEqual([uuid]);
  });
});

async function waitFor(condition: () => Promise<boolean>, timeoutMs = 5000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await sleep(20);
  }
}
