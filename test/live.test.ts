import { setTimeout as sleep } from "node:timers/promises";
import request from "supertest";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp } from "../src/app.ts";
import { createBetatelClient } from "../src/betatel/client.ts";
import { loadConfig } from "../src/config.ts";
import type { Database } from "../src/db/database.ts";
import { createLogger } from "../src/http/logging.ts";
import { createMessageNotifier } from "../src/live/notifier.ts";
import { createReconciler } from "../src/reconcile/reconciler.ts";
import { type CountedNotifier, countSubscriptions } from "./support/counted-notifier.ts";
import { type FakeBetatel, startFakeBetatel } from "./support/fake-betatel.ts";
import { eventually, listen, openEventStream, startServiceProcess } from "./support/live-fixtures.ts";
import {
  aDeliveryRecord,
  anAncientClock,
  backdate,
  DAY,
  HOUR,
  sendOtp,
  serveWdr,
} from "./support/reconcile-fixtures.ts";
import { aUuid, TEST_BETATEL } from "./support/test-app.ts";
import { embedded, openTestDatabase, testDatabaseUrl } from "./support/test-database.ts";

/** This instance: the app under test with its own LISTEN connection, listening on a real port. */
let betatel: FakeBetatel;
let db: Database;
let notifier: CountedNotifier;
let app: ReturnType<typeof createApp>;
let here: Awaited<ReturnType<typeof listen>>;
/** Where changes are made: another instance (a separate process) on a Postgres server, this one when embedded. */
let elsewhere: { url: string; stop(): Promise<void> };

beforeAll(async () => {
  betatel = await startFakeBetatel();
  const env = {
    NODE_ENV: "test",
    BETATEL_BASE_URL: betatel.url,
    BETATEL_API_KEY: TEST_BETATEL.apiKey,
    BETATEL_ACCOUNT_ID: TEST_BETATEL.accountId,
    RECONCILE_INTERVAL_MS: "0",
  };
  const config = loadConfig({ ...env, LOG_LEVEL: "silent" });
  db = await openTestDatabase();
  const logger = createLogger("silent");
  notifier = countSubscriptions(await createMessageNotifier(db, { logger }));
  const client = createBetatelClient({ baseUrl: betatel.url, ...TEST_BETATEL, timeoutMs: 2000 });
  app = createApp({ config, db, betatel: client, logger, notifier, heartbeatMs: 100 });
  here = await listen(app);
  elsewhere = embedded
    ? { url: here.url, stop: async () => {} }
    : await startServiceProcess({ ...env, DATABASE_URL: testDatabaseUrl() ?? "" });
}, 60_000);
afterAll(async () => {
  await elsewhere?.stop();
  await here?.close();
  await notifier?.close();
  await db?.close();
  await betatel?.close();
});

const postStatusElsewhere = async (uuid: string, status: string) => {
  const res = await fetch(`${elsewhere.url}/webhooks/betatel`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ uuid, status, timestamp: new Date().toISOString() }),
  });
  expect(res.status).toBe(200);
  return res.json();
};

const longPoll = (uuid: string, query: string) => fetch(`${here.url}/v1/messages/${uuid}?${query}`);

describe("GET /v1/messages/:uuid/stream", () => {
  it(`when another instance applies a webhook, then the stream sends the changed message (${embedded ? "embedded: same instance" : "other process"})`, async () => {
    const uuid = await sendOtp(app);
    const stream = await openEventStream(`${here.url}/v1/messages/${uuid}/stream`);
    try {
      expect(stream.status).toBe(200);
      expect(stream.contentType).toMatch(/^text\/event-stream/);
      // As GET returns it, less the watchUrl (only answers to an API key carry one).
      const { watchUrl, ...asGetReturnsIt } = (await request(app).get(`/v1/messages/${uuid}`)).body;
      expect(watchUrl).toMatch(/\/stream\?watch=/);
      expect(await stream.event(0)).toEqual(asGetReturnsIt);

      await postStatusElsewhere(uuid, "delivered");

      const changed = (await stream.event(1)) as { status: string; events: Array<{ source: string }> };
      expect(changed).toMatchObject({ uuid, status: "DELIVERED", deliveredAt: expect.any(String) });
      expect(changed.events.map((e) => e.source)).toEqual(["api", "webhook"]);

      // One event per change: a duplicate that changes nothing sends nothing.
      await postStatusElsewhere(uuid, "delivered");
      await postStatusElsewhere(uuid, "read");
      expect(await stream.event(2)).toMatchObject({ status: "READ" });
      await sleep(200);
      expect(stream.events).toHaveLength(3);
    } finally {
      stream.close();
    }
  });

  it("when the reconciler of another instance resolves the message, then the stream sends it", async () => {
    const now = anAncientClock(1980, 15);
    const uuid = await sendOtp(app);
    await backdate(db, uuid, new Date(now.getTime() - 2 * HOUR));
    serveWdr(betatel, (id) =>
      id === uuid ? { status: 200, body: aDeliveryRecord(id, { status: "read" }) } : undefined,
    );
    // Another instance: its own pool and its own notifier.
    const otherDb = await openTestDatabase(2);
    const otherNotifier = embedded
      ? notifier
      : await createMessageNotifier(otherDb, { logger: createLogger("silent") });
    const stream = await openEventStream(`${here.url}/v1/messages/${uuid}/stream`);
    try {
      await stream.event(0);
      const reconciler = createReconciler({
        pool: embedded ? db.pool : otherDb.pool,
        betatel: createBetatelClient({ baseUrl: betatel.url, ...TEST_BETATEL, timeoutMs: 2000 }),
        logger: createLogger("silent"),
        notifier: otherNotifier,
        afterMs: HOUR,
        expireAfterMs: DAY,
        batchSize: 10,
        now: () => now,
      });

      expect((await reconciler.runOnce()).applied).toBe(1);

      expect(await stream.event(1)).toMatchObject({ uuid, status: "READ" });
    } finally {
      stream.close();
      if (otherNotifier !== notifier) await otherNotifier.close();
      await otherDb.close();
      betatel.reset();
    }
  });

  it("when the stream is idle, then it sends heartbeat comments", async () => {
    const uuid = await sendOtp(app);
    const stream = await openEventStream(`${here.url}/v1/messages/${uuid}/stream`);
    try {
      await stream.event(0);
      await eventually(() => stream.comments.length >= 2, 3000);
      expect(stream.comments[0]).toBe("heartbeat");
    } finally {
      stream.close();
    }
  });

  it("when the client disconnects, then its listener is freed", async () => {
    const uuid = await sendOtp(app);
    const stream = await openEventStream(`${here.url}/v1/messages/${uuid}/stream`);
    await stream.event(0);
    expect(notifier.subscriptions(uuid)).toBe(1);

    stream.close();

    await eventually(() => notifier.subscriptions(uuid) === 0);
  });

  it("when asked with HEAD, then it answers the stream's headers at once and keeps no watcher", async () => {
    const uuid = await sendOtp(app);
    const res = await fetch(`${here.url}/v1/messages/${uuid}/stream`, {
      method: "HEAD",
      signal: AbortSignal.timeout(3000),
    });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/event-stream/);
    expect(notifier.subscriptions(uuid)).toBe(0);
    const unknown = await fetch(`${here.url}/v1/messages/${aUuid()}/stream`, { method: "HEAD" });
    expect(unknown.status).toBe(404);
  });

  it("when the uuid is unknown, then it answers 404 problem", async () => {
    const res = await fetch(`${here.url}/v1/messages/${aUuid()}/stream`);
    expect(res.status).toBe(404);
    expect(res.headers.get("content-type")).toMatch(/^application\/problem\+json/);
    expect(await res.json()).toMatchObject({ status: 404, code: "message_not_found" });
  });
});

describe("GET /v1/messages/:uuid?waitFor=...&timeout=...", () => {
  it("when another instance moves the message to the wanted status, then the long-poll answers at once", async () => {
    const uuid = await sendOtp(app);
    const startedAt = Date.now();
    let settled = false;
    const answer = longPoll(uuid, "waitFor=DELIVERED&timeout=20").then((res) => {
      settled = true;
      return res;
    });
    await eventually(() => notifier.subscriptions(uuid) === 1);

    await postStatusElsewhere(uuid, "sent");
    await sleep(300);
    expect(settled).toBe(false); // SENT is not yet DELIVERED

    await postStatusElsewhere(uuid, "delivered");
    const res = await answer;

    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ uuid, status: "DELIVERED", sentAt: expect.any(String) });
    expect(Date.now() - startedAt).toBeLessThan(10_000);
    expect(notifier.subscriptions(uuid)).toBe(0);
  });

  it("when the message reaches a final status other than the wanted one, then the wait ends too", async () => {
    const uuid = await sendOtp(app);
    const startedAt = Date.now();
    const answer = longPoll(uuid, "waitFor=read&timeout=20");
    await eventually(() => notifier.subscriptions(uuid) === 1);

    await postStatusElsewhere(uuid, "failed");

    expect(await (await answer).json()).toMatchObject({ status: "FAILED" });
    expect(Date.now() - startedAt).toBeLessThan(10_000);
  });

  it("when the status already passed the wanted one, then it answers immediately", async () => {
    const uuid = await sendOtp(app);
    await postStatusElsewhere(uuid, "delivered");
    const startedAt = Date.now();

    const res = await longPoll(uuid, "waitFor=SENT&timeout=30");

    expect(await res.json()).toMatchObject({ status: "DELIVERED" });
    expect(Date.now() - startedAt).toBeLessThan(2000);
  });

  it("when nothing changes, then it answers the current state at the timeout", async () => {
    const uuid = await sendOtp(app);
    const startedAt = Date.now();

    const res = await longPoll(uuid, "waitFor=DELIVERED&timeout=1");

    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ uuid, status: "PENDING", events: [expect.any(Object)] });
    expect(Date.now() - startedAt).toBeGreaterThanOrEqual(950);
    expect(notifier.subscriptions(uuid)).toBe(0);
  });

  it("when the client gives up, then its listener is freed", async () => {
    const uuid = await sendOtp(app);
    const abort = new AbortController();
    const answer = fetch(`${here.url}/v1/messages/${uuid}?waitFor=READ&timeout=60`, { signal: abort.signal });
    await eventually(() => notifier.subscriptions(uuid) === 1);

    abort.abort();

    await expect(answer).rejects.toThrow();
    await eventually(() => notifier.subscriptions(uuid) === 0);
  });

  it.each([
    ["waitFor=DONE", "query.waitFor"],
    ["waitFor=SENT&timeout=0", "query.timeout"],
    ["waitFor=SENT&timeout=61", "query.timeout"],
    ["waitFor=SENT&timeout=soon", "query.timeout"],
    ["timeout=1.5", "query.timeout"],
  ])("when the query is %s, then it answers 400 naming %s", async (query, path) => {
    const uuid = await sendOtp(app);
    const res = await longPoll(uuid, query);
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ code: "validation_failed", errors: [expect.objectContaining({ path })] });
  });

  it("when asked with HEAD, then it answers the plain read's headers at once instead of waiting", async () => {
    const uuid = await sendOtp(app);
    const started = Date.now();
    const res = await fetch(`${here.url}/v1/messages/${uuid}?waitFor=READ&timeout=20`, {
      method: "HEAD",
      signal: AbortSignal.timeout(5000),
    });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^application\/json/);
    expect(Date.now() - started).toBeLessThan(3000);
    // Its parameters are checked as for GET.
    const bad = await fetch(`${here.url}/v1/messages/${uuid}?waitFor=bogus`, { method: "HEAD" });
    expect(bad.status).toBe(400);
  });

  it("when the uuid is unknown, then it answers 404", async () => {
    const res = await longPoll(aUuid(), "waitFor=DELIVERED&timeout=5");
    expect(res.status).toBe(404);
    expect(await res.json()).toMatchObject({ code: "message_not_found" });
  });
});

describe.skipIf(embedded)("LISTEN connection", () => {
  it("when the LISTEN connection is cut, then it reconnects and waiting clients still see a change made meanwhile", async () => {
    const applicationName = `live-test-${aUuid()}`;
    const logger = createLogger("silent");
    const ownNotifier = countSubscriptions(
      await createMessageNotifier(db, { logger, applicationName, reconnectMinMs: 200 }),
    );
    const config = loadConfig({ NODE_ENV: "test", LOG_LEVEL: "silent" });
    const client = createBetatelClient({ baseUrl: betatel.url, ...TEST_BETATEL, timeoutMs: 2000 });
    const ownApp = await listen(createApp({ config, db, betatel: client, logger, notifier: ownNotifier }));
    try {
      const uuid = await sendOtp(app);
      const answer = fetch(`${ownApp.url}/v1/messages/${uuid}?waitFor=DELIVERED&timeout=20`);
      await eventually(() => ownNotifier.subscriptions(uuid) === 1);
      const startedAt = Date.now();

      const { rows } = await db.pool.query(
        "SELECT pg_terminate_backend(pid) AS cut FROM pg_stat_activity WHERE application_name = $1",
        [applicationName],
      );
      expect(rows).toEqual([{ cut: true }]);
      await postStatusElsewhere(uuid, "delivered"); // while this instance is not listening

      expect(await (await answer).json()).toMatchObject({ status: "DELIVERED" });
      expect(Date.now() - startedAt).toBeLessThan(10_000);
      // Listening again: the next change arrives as usual.
      await eventually(async () => {
        const { rowCount } = await db.pool.query(
          "SELECT 1 FROM pg_stat_activity WHERE application_name = $1 AND query LIKE 'LISTEN%'",
          [applicationName],
        );
        return rowCount === 1;
      });
      const next = fetch(`${ownApp.url}/v1/messages/${uuid}?waitFor=READ&timeout=20`);
      await eventually(() => ownNotifier.subscriptions(uuid) === 1);
      await postStatusElsewhere(uuid, "read");
      expect(await (await next).json()).toMatchObject({ status: "READ" });
    } finally {
      await ownApp.close();
      await ownNotifier.close();
    }
  });
});

describe.skipIf(embedded)("shutdown", () => {
  it("when the service gets SIGTERM, then its open streams end and it exits promptly", async () => {
    const uuid = await sendOtp(app);
    const stream = await fetch(`${elsewhere.url}/v1/messages/${uuid}/stream`);
    const reader = stream.body?.getReader();
    await reader?.read(); // the first event
    const startedAt = Date.now();

    await elsewhere.stop();

    for (;;) if ((await reader?.read())?.done !== false) break; // the stream ended
    expect(Date.now() - startedAt).toBeLessThan(3000); // not the client's keep-alive timeout, nor the 25 s forced close
  });
});
