import { setTimeout as sleep } from "node:timers/promises";
import request from "supertest";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { createApp } from "../src/app.ts";
import { createBetatelClient } from "../src/betatel/client.ts";
import { createSandboxBetatel } from "../src/betatel/sandbox.ts";
import { loadConfig } from "../src/config.ts";
import type { Database } from "../src/db/database.ts";
import { createLogger } from "../src/http/logging.ts";
import { createReconcileJob } from "../src/reconcile/job.ts";
import { createReconciler, type ReconcilerOptions } from "../src/reconcile/reconciler.ts";
import { eventually } from "./support/live-fixtures.ts";
import {
  aDeliveryRecord,
  anAncientClock,
  backdate,
  DAY,
  HOUR,
  sendOtp,
  serveWdr,
  wdrRequestCount,
  wdrRequestsPerUuid,
} from "./support/reconcile-fixtures.ts";
import { aUuid, LogCapture, startTestApp, TEST_BETATEL, type TestApp } from "./support/test-app.ts";
import { openTestDatabase } from "./support/test-database.ts";

let t: TestApp;
beforeAll(async () => {
  t = await startTestApp();
});
afterAll(() => t.close());
beforeEach(() => t.betatel.reset());

const OTP = "Your code is 482910";

/** A reconciler as the service builds it, at a fixed clock: it sees messages dated 1 h to 1 day before it. */
function reconcilerAt(now: Date, overrides: Partial<ReconcilerOptions> = {}) {
  const logs = new LogCapture();
  const reconciler = createReconciler({
    pool: t.db.pool,
    betatel: createBetatelClient({ baseUrl: t.betatel.url, ...TEST_BETATEL, timeoutMs: 2000 }),
    logger: createLogger("info", logs),
    afterMs: HOUR,
    expireAfterMs: DAY,
    batchSize: 50,
    now: () => now,
    ...overrides,
  });
  return { reconciler, logs };
}

/** A message sent through the API whose webhooks never came, created `age` before `now`. */
async function aLostMessage(now: Date, age = 2 * HOUR) {
  const uuid = await sendOtp(t.app, OTP);
  await backdate(t.db, uuid, new Date(now.getTime() - age));
  return uuid;
}

const readMessage = async (uuid: string) => (await request(t.app).get(`/v1/messages/${uuid}`)).body;

async function checkBookkeeping(db: Database, uuid: string) {
  const { rows } = await db.pool.query(
    "SELECT check_count, last_checked_at, next_check_at FROM messages WHERE uuid = $1",
    [uuid],
  );
  return rows[0] as { check_count: number; last_checked_at: Date | null; next_check_at: Date | null };
}

describe("reconciler", () => {
  it("when a message's webhooks were lost, then it asks Betatel's WDR and applies DELIVERED, without keeping the OTP", async () => {
    const now = anAncientClock(1980, 15);
    const uuid = await aLostMessage(now);
    const young = await aLostMessage(now, 10 * 60_000);
    serveWdr(t.betatel, (id) => (id === uuid || id === young ? { status: 200, body: aDeliveryRecord(id) } : undefined));
    const { reconciler, logs } = reconcilerAt(now);

    const summary = await reconciler.runOnce();

    expect(summary).toMatchObject({ claimed: 1, checked: 1, applied: 1 });
    expect(summary.backoff).toBeUndefined();
    expect(wdrRequestsPerUuid(t.betatel, [uuid, young])).toEqual([1, 0]);
    const call = t.betatel.requests.find((req) => req.url.includes(uuid));
    expect(call?.method).toBe("GET");
    expect(call?.headers["x-api-key"]).toBe(TEST_BETATEL.apiKey);
    expect(call?.headers["x-account-id"]).toBe(TEST_BETATEL.accountId);

    const message = await readMessage(uuid);
    expect(message).toMatchObject({ status: "DELIVERED", deliveredAt: "2026-11-27T10:00:03.000Z" });
    expect(message.events).toContainEqual(
      expect.objectContaining({ status: "DELIVERED", outcome: "applied", source: "reconcile" }),
    );
    expect((await readMessage(young)).status).toBe("PENDING");

    const { rows } = await t.db.pool.query("SELECT payload::text AS payload FROM message_events WHERE uuid = $1", [
      uuid,
    ]);
    const stored = rows.map((row) => String(row.payload)).join("\n");
    expect(stored).toContain("wamid.");
    expect(stored).not.toContain("482910");
    expect(stored).not.toContain('"text"');
    expect(logs.text).toContain('"msg":"reconcile run"');
    expect(logs.text).toContain('"applied":1');
    expect(logs.text).not.toContain("482910");
    expect((await checkBookkeeping(t.db, uuid)).check_count).toBe(1);

    // Resolved: the next run leaves it alone.
    expect((await reconciler.runOnce()).claimed).toBe(0);
    expect(wdrRequestsPerUuid(t.betatel, [uuid])).toEqual([1]);
  });

  it("when Betatel's status word is unknown or the record is missing, then nothing changes and the check is rescheduled", async () => {
    const now = anAncientClock(1980, 15);
    const unknownWord = await aLostMessage(now);
    const missing = await aLostMessage(now);
    serveWdr(t.betatel, (id) =>
      id === unknownWord ? { status: 200, body: aDeliveryRecord(id, { status: "in_flight_v2" }) } : undefined,
    );

    const first = await reconcilerAt(now).reconciler.runOnce();

    expect(first).toMatchObject({ claimed: 2, checked: 2, unknownStatus: 1, notFound: 1, applied: 0 });
    for (const uuid of [unknownWord, missing]) {
      expect((await readMessage(uuid)).status).toBe("PENDING");
      const bookkeeping = await checkBookkeeping(t.db, uuid);
      expect(bookkeeping.check_count).toBe(1);
      expect(bookkeeping.last_checked_at).toEqual(now);
      expect(bookkeeping.next_check_at?.getTime()).toBeGreaterThan(now.getTime());
    }
    // Claimed and scheduled: not checked again at the same moment, checked again later.
    expect((await reconcilerAt(now).reconciler.runOnce()).claimed).toBe(0);
    expect((await reconcilerAt(new Date(now.getTime() + 3 * HOUR)).reconciler.runOnce()).claimed).toBe(2);
    expect(wdrRequestsPerUuid(t.betatel, [unknownWord, missing])).toEqual([2, 2]);
  });

  it("when the sandbox's webhooks cannot reach the service, then the reconciler learns the simulated state from the sandbox", async () => {
    const now = anAncientClock(1980, 15);
    const logger = createLogger("silent");
    // Port 9 (discard) refuses: every simulated webhook is lost.
    const sandbox = createSandboxBetatel({
      webhookUrl: () => "http://127.0.0.1:9/webhooks/betatel",
      webhookSecret: undefined,
      signingSecret: undefined,
      stepMs: 5,
      failureRate: 0,
      logger,
    });
    const sandboxApp = createApp({ config: loadConfig({ NODE_ENV: "test" }), db: t.db, betatel: sandbox, logger });
    const uuid = await sendOtp(sandboxApp, OTP);
    await eventually(async () => (await sandbox.getDeliveryRecord(uuid))?.status === "read");
    await backdate(t.db, uuid, new Date(now.getTime() - 2 * HOUR));

    const summary = await reconcilerAt(now, { betatel: sandbox }).reconciler.runOnce();

    expect(summary).toMatchObject({ claimed: 1, applied: 1 });
    expect(await readMessage(uuid)).toMatchObject({ status: "READ", readAt: expect.any(String) });
    expect(await sandbox.getDeliveryRecord(aUuid())).toBeNull();
    sandbox.stop();
  });

  it("when two instances run at the same time over the same due messages, then each WDR is fetched once", async () => {
    const now = anAncientClock(1980, 15);
    const uuids: string[] = [];
    for (let i = 0; i < 8; i++) uuids.push(await aLostMessage(now));
    // Slow answers so that the two instances' runs overlap.
    serveWdr(t.betatel, (id) =>
      uuids.includes(id) ? { status: 200, body: aDeliveryRecord(id, { status: "SENT" }), delayMs: 25 } : undefined,
    );
    const other = await openTestDatabase(2);
    try {
      const instances = [t.db, other].map((db) => reconcilerAt(now, { pool: db.pool, batchSize: 3 }).reconciler);
      const drain = async (reconciler: (typeof instances)[number]) => {
        let claimed = 0;
        for (let run = 0; run < 10; run++) {
          const summary = await reconciler.runOnce();
          if (summary.claimed === 0) break;
          claimed += summary.claimed;
        }
        return claimed;
      };

      const claimed = await Promise.all(instances.map(drain));

      expect(claimed.reduce((sum, n) => sum + n, 0)).toBe(uuids.length);
      expect(wdrRequestsPerUuid(t.betatel, uuids)).toEqual(uuids.map(() => 1));
      for (const uuid of uuids) expect((await readMessage(uuid)).status).toBe("SENT");
    } finally {
      await other.close();
    }
  });

  it("when the oldest due message's record is a 5xx or unreadable, then only that message is backed off and the others are still checked", async () => {
    const now = anAncientClock(1980, 15);
    const failing = await aLostMessage(now, 5 * HOUR);
    const unreadable = await aLostMessage(now, 4 * HOUR);
    const fine = await aLostMessage(now, 3 * HOUR);
    serveWdr(t.betatel, (id) => {
      if (id === failing) return { status: 500, body: { message: "internal error" } };
      if (id === unreadable) return { status: 200, body: "<html>oops</html>" };
      if (id === fine) return { status: 200, body: aDeliveryRecord(id) };
      return undefined;
    });
    const results: string[] = [];
    const { reconciler, logs } = reconcilerAt(now, { onCheck: (result) => results.push(result) });

    const summary = await reconciler.runOnce();

    expect(summary).toMatchObject({ claimed: 3, checked: 1, errors: 2, applied: 1 });
    expect(summary.backoff).toBeUndefined();
    expect(results.sort()).toEqual(["applied", "error", "error"]);
    expect(logs.text).toContain("delivery record unavailable");
    expect((await readMessage(fine)).status).toBe("DELIVERED");
    // A failed check is not a check, but it does schedule the message for later, on its own.
    for (const uuid of [failing, unreadable]) {
      const bookkeeping = await checkBookkeeping(t.db, uuid);
      expect(bookkeeping.check_count).toBe(0);
      expect(bookkeeping.last_checked_at).toBeNull();
      expect(bookkeeping.next_check_at?.getTime()).toBeGreaterThan(now.getTime());
    }
    expect((await checkBookkeeping(t.db, fine)).check_count).toBe(1);
    expect((await reconcilerAt(now).reconciler.runOnce()).claimed).toBe(0);
    // Later, the bad ones are asked again.
    expect((await reconcilerAt(new Date(now.getTime() + 3 * HOUR)).reconciler.runOnce()).claimed).toBe(2);
    expect(wdrRequestsPerUuid(t.betatel, [failing, unreadable, fine])).toEqual([2, 2, 1]);
  });

  it("when Betatel answers 5xx for every record, then each is asked once, the run stops after three in a row and the job backs off", async () => {
    const now = anAncientClock(1980, 15);
    const uuids: string[] = [];
    for (let i = 0; i < 6; i++) uuids.push(await aLostMessage(now, (10 - i) * HOUR));
    serveWdr(t.betatel, (id) => (uuids.includes(id) ? { status: 503, body: { message: "down" } } : undefined));
    const { reconciler, logs } = reconcilerAt(now);
    const job = createReconcileJob({ reconciler, logger: createLogger("info", logs), intervalMs: 20 });

    job.start();
    await sleep(700);
    await job.stop();

    // Never the same failing record again and again at the head of the queue.
    expect(wdrRequestsPerUuid(t.betatel, uuids)).toEqual(uuids.map(() => 1));
    expect(logs.text).toContain("reconciler backing off");
    for (const uuid of uuids) expect((await readMessage(uuid)).status).toBe("PENDING");
  });

  it("when the record says read, then SENT and DELIVERED are back-filled from its times as well", async () => {
    const now = anAncientClock(1980, 15);
    const uuid = await aLostMessage(now);
    serveWdr(t.betatel, (id) =>
      id === uuid ? { status: 200, body: aDeliveryRecord(id, { status: "read" }) } : undefined,
    );

    const summary = await reconcilerAt(now).reconciler.runOnce();

    expect(summary).toMatchObject({ checked: 1, applied: 1 });
    const message = await readMessage(uuid);
    expect(message).toMatchObject({
      status: "READ",
      sentAt: "2026-11-27T10:00:00.000Z",
      deliveredAt: "2026-11-27T10:00:03.000Z",
      readAt: expect.any(String),
    });
    const reconciled = message.events.filter((e: { source: string }) => e.source === "reconcile");
    expect(reconciled.map((e: { status: string }) => e.status).sort()).toEqual(["DELIVERED", "READ", "SENT"]);
    for (const event of reconciled) expect(["applied", "stale"]).toContain(event.outcome);
  });

  it("when the record says failed, then FAILED is stored with a reason (Betatel's, or a plain one)", async () => {
    const now = anAncientClock(1980, 15);
    const withReason = await aLostMessage(now);
    const without = await aLostMessage(now);
    serveWdr(t.betatel, (id) => {
      if (id === withReason)
        return {
          status: 200,
          body: aDeliveryRecord(id, { status: "failed", error: { code: 131026, message: "Message undeliverable" } }),
        };
      if (id === without) return { status: 200, body: aDeliveryRecord(id, { status: "failed" }) };
      return undefined;
    });

    await reconcilerAt(now).reconciler.runOnce();

    expect(await readMessage(withReason)).toMatchObject({
      status: "FAILED",
      failedAt: expect.any(String),
      sentAt: null,
      error: { code: "131026", message: "Message undeliverable" },
    });
    expect(await readMessage(without)).toMatchObject({
      status: "FAILED",
      error: { code: "wdr_failed", message: "Betatel's delivery record says failed" },
    });
  });

  it("when Betatel answers 429 with Retry-After, then the job waits that long before asking again", async () => {
    const now = anAncientClock(1980, 15);
    const uuid = await aLostMessage(now);
    const other = await aLostMessage(now);
    serveWdr(t.betatel, (id) =>
      id === uuid || id === other
        ? { status: 429, body: { message: "slow down" }, headers: { "retry-after": "1" } }
        : undefined,
    );
    const { reconciler, logs } = reconcilerAt(now);
    const job = createReconcileJob({ reconciler, logger: createLogger("info", logs), intervalMs: 20 });

    job.start();
    await sleep(700);
    // One request, then silence: the batch stopped at the first 429 and Retry-After (1 s) beats 40 ms.
    const early = wdrRequestCount(t.betatel, [uuid, other]);
    const afterEarly = Date.now();
    await eventually(() => wdrRequestCount(t.betatel, [uuid, other]) >= 2, 15_000);
    const waited = Date.now() - afterEarly + 700;
    await job.stop();

    expect(early).toBe(1);
    expect(waited).toBeGreaterThanOrEqual(1000);
    expect(wdrRequestCount(t.betatel, [uuid, other])).toBe(2);
  });
});
