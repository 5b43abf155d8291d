import { setTimeout as sleep } from "node:timers/promises";
import request from "supertest";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp } from "../src/app.ts";
import { createBetatelClient } from "../src/betatel/client.ts";
import { loadConfig } from "../src/config.ts";
import type { Database } from "../src/db/database.ts";
import { createLogger } from "../src/http/logging.ts";
import { createLiveHub, type LiveHub } from "../src/live/hub.ts";
import { createMessageNotifier, type MessageNotifier } from "../src/live/notifier.ts";
import { findMessage } from "../src/messages/repository.ts";
import { type FakeBetatel, startFakeBetatel } from "./support/fake-betatel.ts";
import { eventually, listen, openEventStream, openRawRequests, rawRequest } from "./support/live-fixtures.ts";
import { insertMessage } from "./support/message-rows.ts";
import { sendOtp } from "./support/reconcile-fixtures.ts";
import { aUuid, TEST_BETATEL } from "./support/test-app.ts";
import { openTestDatabase } from "./support/test-database.ts";

let betatel: FakeBetatel;
let db: Database;
let notifier: MessageNotifier;
beforeAll(async () => {
  betatel = await startFakeBetatel();
  db = await openTestDatabase();
  notifier = await createMessageNotifier(db, { logger: createLogger("silent") });
});
afterAll(async () => {
  await notifier?.close();
  await db?.close();
  await betatel?.close();
});

interface Live {
  url: string;
  app: ReturnType<typeof createApp>;
  hub: LiveHub;
  /** Database reads the live hub made so far. */
  reads(): number;
  close(): Promise<void>;
}

/** The app on a real port with `env`, its live hub reading through a counter. */
async function startLive(env: Record<string, string> = {}, rereadMs?: number): Promise<Live> {
  const config = loadConfig({
    NODE_ENV: "test",
    LOG_LEVEL: "silent",
    BETATEL_BASE_URL: betatel.url,
    BETATEL_API_KEY: TEST_BETATEL.apiKey,
    BETATEL_ACCOUNT_ID: TEST_BETATEL.accountId,
    ...env,
  });
  let reads = 0;
  const hub = createLiveHub({
    // Not closed with the app: the notifier is shared by this file's tests.
    notifier: { ...notifier, close: async () => {} },
    read: (uuid, team) => {
      reads++;
      return findMessage(db, uuid, team);
    },
    limits: { maxWatchers: config.LIVE_MAX_WATCHERS, maxWatchersPerKey: config.LIVE_MAX_WATCHERS_PER_KEY },
    rereadMs,
  });
  const client = createBetatelClient({ baseUrl: betatel.url, ...TEST_BETATEL, timeoutMs: 2000 });
  const app = createApp({ config, db, betatel: client, logger: createLogger("silent"), live: hub, heartbeatMs: 100 });
  const server = await listen(app);
  return {
    url: server.url,
    app,
    hub,
    reads: () => reads,
    async close() {
      await hub.close();
      await server.close();
    },
  };
}

const postStatus = (app: Live["app"], uuid: string, status: string) =>
  request(app).post("/webhooks/betatel").send({ uuid, status }).expect(200);

describe("watcher caps", () => {
  it("when a key has LIVE_MAX_WATCHERS_PER_KEY open, or the instance LIVE_MAX_WATCHERS, then the next stream or long-poll is 429 too_many_watchers with Retry-After", async () => {
    const live = await startLive({ API_KEYS: "key-a,key-b", LIVE_MAX_WATCHERS: "5", LIVE_MAX_WATCHERS_PER_KEY: "3" });
    const { uuid } = await insertMessage(db.pool);
    const stream = (key: string) => rawRequest(live.url, `/v1/messages/${uuid}/stream`, { "x-api-key": key });
    const opened = [stream("key-a"), stream("key-a"), stream("key-a")];
    try {
      expect(await Promise.all(opened.map((s) => s.status()))).toEqual([200, 200, 200]);

      const perKey = await fetch(`${live.url}/v1/messages/${uuid}/stream`, { headers: { "x-api-key": "key-a" } });
      expect(perKey.status).toBe(429);
      expect(perKey.headers.get("content-type")).toMatch(/^application\/problem\+json/);
      expect(Number(perKey.headers.get("retry-after"))).toBeGreaterThan(0);
      expect(await perKey.json()).toMatchObject({ status: 429, code: "too_many_watchers" });
      const poll = await fetch(`${live.url}/v1/messages/${uuid}?waitFor=READ&timeout=5`, {
        headers: { "x-api-key": "key-a" },
      });
      expect(poll.status).toBe(429);

      // Another key has its own allowance, up to the instance's cap.
      opened.push(stream("key-b"), stream("key-b"));
      expect(await Promise.all(opened.slice(3).map((s) => s.status()))).toEqual([200, 200]);
      const instance = await fetch(`${live.url}/v1/messages/${uuid}/stream`, { headers: { "x-api-key": "key-b" } });
      expect(instance.status).toBe(429);
      expect(await instance.json()).toMatchObject({
        code: "too_many_watchers",
        detail: expect.stringMatching(/instance/),
      });

      const metrics = await (await fetch(`${live.url}/metrics`)).text();
      expect(metrics).toMatch(/^otp_live_watchers 5$/m);

      // A watcher that leaves frees its slot.
      opened[0]?.close();
      await eventually(() => live.hub.watcherCount() === 4);
      const again = stream("key-b");
      opened.push(again);
      expect(await again.status()).toBe(200);
    } finally {
      for (const s of opened) s.close();
      await live.close();
    }
  });

  it("when the service has no API keys, then every caller counts as one key", async () => {
    const live = await startLive({ LIVE_MAX_WATCHERS_PER_KEY: "2" });
    const { uuid } = await insertMessage(db.pool);
    const opened = [0, 1].map(() => rawRequest(live.url, `/v1/messages/${uuid}/stream`));
    try {
      expect(await Promise.all(opened.map((s) => s.status()))).toEqual([200, 200]);
      const third = await fetch(`${live.url}/v1/messages/${uuid}?timeout=5`);
      expect(third.status).toBe(429);
      expect(await third.json()).toMatchObject({ code: "too_many_watchers" });
    } finally {
      for (const s of opened) s.close();
      await live.close();
    }
  });
});

describe("one read per change", () => {
  it("when 300 streams watch one message and it changes, then the database is read once for all of them", async () => {
    const live = await startLive({ LIVE_MAX_WATCHERS_PER_KEY: "1000" });
    const uuid = await sendOtp(live.app);
    const { requests, statuses } = await openRawRequests(300, () =>
      rawRequest(live.url, `/v1/messages/${uuid}/stream`),
    );
    try {
      expect(statuses.every((status) => status === 200)).toBe(true);
      await eventually(() => requests.every((s) => s.events() === 1));
      const before = live.reads();

      await postStatus(live.app, uuid, "delivered");

      await eventually(() => requests.every((s) => s.events() === 2));
      await sleep(100);
      expect(live.reads() - before).toBe(1);
    } finally {
      for (const s of requests) s.close();
      await live.close();
    }
  });
});

describe("what a stream announces", () => {
  it("starts with retry:, gives each event an id that grows with every change, and a reconnect with Last-Event-ID repeats nothing unchanged", async () => {
    const live = await startLive();
    const uuid = await sendOtp(live.app);
    try {
      const first = rawRequest(live.url, `/v1/messages/${uuid}/stream`);
      await eventually(() => first.events() === 1);
      expect(first.received()).toMatch(/\r\n\r\n[0-9a-f]+\r\nretry: \d+\n\n/);
      const firstId = Number(/id: (\d+)\ndata: /.exec(first.received())?.[1]);
      expect(firstId).toBeGreaterThan(0);
      first.close();

      // Nothing changed since: the reconnect gets heartbeats, no repeated event.
      const same = await openEventStream(`${live.url}/v1/messages/${uuid}/stream`, {
        "last-event-id": String(firstId),
      });
      await eventually(() => same.comments.length >= 2);
      expect(same.events).toEqual([]);
      same.close();

      await postStatus(live.app, uuid, "sent");
      const later = rawRequest(live.url, `/v1/messages/${uuid}/stream`, { "last-event-id": String(firstId) });
      await eventually(() => later.events() === 1);
      const laterId = Number(/id: (\d+)\ndata: /.exec(later.received())?.[1]);
      expect(laterId).toBeGreaterThan(firstId);
      expect(later.received()).toContain('"status":"SENT"');
      later.close();
    } finally {
      await live.close();
    }
  });
});

describe("every change is announced", () => {
  it("when a stale status back-fills a timestamp, then the stream sends it", async () => {
    const live = await startLive();
    const uuid = await sendOtp(live.app);
    await postStatus(live.app, uuid, "delivered");
    const stream = await openEventStream(`${live.url}/v1/messages/${uuid}/stream`);
    try {
      expect(await stream.event(0)).toMatchObject({ status: "DELIVERED", sentAt: null });

      await postStatus(live.app, uuid, "sent");

      expect(await stream.event(1)).toMatchObject({ status: "DELIVERED", sentAt: expect.any(String) });
    } finally {
      stream.close();
      await live.close();
    }
  });

  it("when the sender's retry settles a status left buffered, then the stream sends it", async () => {
    const live = await startLive();
    const uuid = aUuid();
    await postStatus(live.app, uuid, "delivered"); // buffered: the message is not stored yet
    await insertMessage(db.pool, { uuid }); // stored by a process that crashed before settling it
    const stream = await openEventStream(`${live.url}/v1/messages/${uuid}/stream`);
    try {
      expect(await stream.event(0)).toMatchObject({ status: "PENDING" });

      const retry = await postStatus(live.app, uuid, "delivered");

      expect(retry.body.results[0].outcome).toBe("duplicate");
      expect(await stream.event(1)).toMatchObject({ status: "DELIVERED" });
    } finally {
      stream.close();
      await live.close();
    }
  });

  it("when a change was never announced, then the periodic re-read still delivers it", async () => {
    const live = await startLive({}, 200);
    const uuid = await sendOtp(live.app);
    const stream = await openEventStream(`${live.url}/v1/messages/${uuid}/stream`);
    try {
      await stream.event(0);
      await sleep(500);
      expect(stream.events).toHaveLength(1); // re-reads of an unchanged message send nothing

      // Another writer whose announcement was lost.
      await db.pool.query(
        `WITH e AS (INSERT INTO message_events (uuid, status, outcome, occurred_at, received_at, source)
                    VALUES ($1, 'SENT', 'applied', now(), now(), 'webhook'))
         UPDATE messages SET status = 'SENT', sent_at = now(), updated_at = now() WHERE uuid = $1`,
        [uuid],
      );

      expect(await stream.event(1, 3000)).toMatchObject({ status: "SENT" });
    } finally {
      stream.close();
      await live.close();
    }
  });
});
