import request from "supertest";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp } from "../src/app.ts";
import { createBetatelClient } from "../src/betatel/client.ts";
import { loadConfig } from "../src/config.ts";
import type { Database } from "../src/db/database.ts";
import { createLogger } from "../src/http/logging.ts";
import { createLiveHub } from "../src/live/hub.ts";
import { createMessageNotifier, type MessageNotifier, type NotifierOptions } from "../src/live/notifier.ts";
import { openLiveReads } from "../src/live/reads.ts";
import { countSubscriptions } from "./support/counted-notifier.ts";
import { type FakeBetatel, startFakeBetatel } from "./support/fake-betatel.ts";
import { eventually, listen, openRawRequests, rawRequest } from "./support/live-fixtures.ts";
import { sendOtp } from "./support/reconcile-fixtures.ts";
import { startTcpProxy, type TcpProxy } from "./support/tcp-proxy.ts";
import { aUuid, TEST_BETATEL } from "./support/test-app.ts";
import { embedded, openTestDatabase } from "./support/test-database.ts";

const logger = createLogger("silent");
let betatel: FakeBetatel;
let db: Database;
let proxy: TcpProxy;
/** Another instance: its own notifier, LISTENing directly. */
let other: { app: ReturnType<typeof createApp>; notifier: MessageNotifier };

const configFor = (env: Record<string, string> = {}) =>
  loadConfig({
    NODE_ENV: "test",
    LOG_LEVEL: "silent",
    BETATEL_BASE_URL: betatel.url,
    BETATEL_API_KEY: TEST_BETATEL.apiKey,
    BETATEL_ACCOUNT_ID: TEST_BETATEL.accountId,
    ...env,
  });
const betatelClient = () => createBetatelClient({ baseUrl: betatel.url, ...TEST_BETATEL, timeoutMs: 2000 });

beforeAll(async () => {
  if (embedded) return;
  betatel = await startFakeBetatel();
  db = await openTestDatabase();
  proxy = await startTcpProxy();
  const notifier = await createMessageNotifier(db, { logger });
  other = { notifier, app: createApp({ config: configFor(), db, betatel: betatelClient(), logger, notifier }) };
});
afterAll(async () => {
  await other?.notifier.close();
  await proxy?.close();
  await db?.close();
  await betatel?.close();
});

/** This instance: its LISTEN connection goes through the test's TCP proxy, so the test can cut or stall it. */
async function startInstance(options: Partial<NotifierOptions> = {}, env: Record<string, string> = {}) {
  const applicationName = `live-listen-${aUuid()}`;
  const notifier = countSubscriptions(
    await createMessageNotifier(
      { ...db, url: proxy.via(db.url ?? "") },
      { logger, applicationName, reconnectMinMs: 100, reconnectMaxMs: 500, ...options },
    ),
  );
  const app = createApp({ config: configFor(env), db, betatel: betatelClient(), logger, notifier });
  const server = await listen(app);
  return {
    app,
    url: server.url,
    notifier,
    applicationName,
    async close() {
      await server.close();
      await notifier.close();
    },
  };
}

const waitFor = (url: string, uuid: string, status: string) =>
  fetch(`${url}/v1/messages/${uuid}?waitFor=${status}&timeout=30`).then(async (res) => ({
    status: ((await res.json()) as { status: string }).status,
    at: Date.now(),
  }));

describe.skipIf(embedded)("the LISTEN connection", () => {
  it("when its flows are silently dropped (no error, no close), then the probe notices, it reconnects, and waiting clients see the change made meanwhile", async () => {
    // A probe that waits 1 s before cutting: shorter ones cut healthy connections on a loaded CI machine.
    const here = await startInstance({ probeMs: 200, probeTimeoutMs: 1000 });
    try {
      const uuid = await sendOtp(other.app);
      const answer = waitFor(here.url, uuid, "DELIVERED");
      await eventually(() => here.notifier.subscriptions(uuid) === 1);

      proxy.blackhole();
      const startedAt = Date.now();
      await request(other.app).post("/webhooks/betatel").send({ uuid, status: "delivered" }).expect(200);

      const { status, at } = await answer;
      expect(status).toBe("DELIVERED");
      expect(at - startedAt).toBeLessThan(10_000); // not the long-poll's 30 s timeout
    } finally {
      await here.close();
    }
  }, 45_000);

  it("when LISTEN is down, then this instance's own changes still reach its own watchers at once", async () => {
    const here = await startInstance();
    try {
      const uuid = await sendOtp(here.app);
      const answer = waitFor(here.url, uuid, "DELIVERED");
      await eventually(() => here.notifier.subscriptions(uuid) === 1);
      await proxy.stop(); // cut, and reconnecting is refused

      try {
        const startedAt = Date.now();
        await request(here.app).post("/webhooks/betatel").send({ uuid, status: "delivered" }).expect(200);

        const { status, at } = await answer;
        expect(status).toBe("DELIVERED");
        expect(at - startedAt).toBeLessThan(2000);
      } finally {
        await proxy.start();
      }
    } finally {
      await here.close();
    }
  });

  it("when thousands of watchers re-read after a reconnect, then their reads queue on the live pool and webhooks keep answering 200 at once", async () => {
    const applicationName = `live-storm-${aUuid()}`;
    const notifier = await createMessageNotifier(db, { logger, applicationName, reconnectMinMs: 100 });
    const liveReads = openLiveReads(db);
    let reads = 0;
    // The main pool as small as it gets: one connection the webhook needs.
    const main = await openTestDatabase(1);
    const hub = createLiveHub({
      notifier,
      read: (uuid, team) => {
        reads++;
        return liveReads.read(uuid, team);
      },
      readConcurrency: liveReads.concurrency,
      limits: { maxWatchers: 5000, maxWatchersPerKey: 5000 },
      onClose: liveReads.close,
    });
    const app = createApp({ config: configFor(), db: main, betatel: betatelClient(), logger, live: hub });
    const server = await listen(app);
    const watchers = 2000;
    const { rows } = await db.pool.query<{ uuid: string }>(
      `INSERT INTO messages (uuid, "to", status, text_length)
       SELECT 'storm-' || $1 || '-' || n, '38761000000', 'PENDING', 6 FROM generate_series(1, $2) AS n
       RETURNING uuid`,
      [aUuid(), watchers],
    );
    const opened = await openRawRequests(watchers, (i) =>
      rawRequest(server.url, `/v1/messages/${rows[i]?.uuid}/stream`),
    );
    try {
      expect(opened.statuses.every((status) => status === 200)).toBe(true);
      const before = reads;
      let mostWaiting = 0;
      const sampler = setInterval(() => {
        mostWaiting = Math.max(mostWaiting, main.pool.waitingCount);
      }, 1);

      await db.pool.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1", [
        applicationName,
      ]);
      await eventually(() => reads > before + 50, 5000); // the storm has begun
      const uuid = await sendOtp(app);
      const slowest = { ms: 0 };
      for (const status of ["sent", "delivered", "read"]) {
        const startedAt = Date.now();
        await request(app).post("/webhooks/betatel").send({ uuid, status }).expect(200);
        slowest.ms = Math.max(slowest.ms, Date.now() - startedAt);
      }
      await eventually(() => reads >= before + watchers, 30_000);
      clearInterval(sampler);

      expect(mostWaiting).toBeLessThanOrEqual(1); // the webhook never queued behind the re-reads
      expect(slowest.ms).toBeLessThan(2000);
    } finally {
      for (const s of opened.requests) s.close();
      await server.close();
      await hub.close();
      await main.close();
      await db.pool.query("DELETE FROM messages WHERE uuid = ANY($1)", [rows.map((row) => row.uuid)]);
    }
  }, 60_000);
});
