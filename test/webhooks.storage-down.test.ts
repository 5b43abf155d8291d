import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp } from "../src/app.ts";
import { createBetatelClient } from "../src/betatel/client.ts";
import { loadConfig } from "../src/config.ts";
import { type Database, openDatabase } from "../src/db/database.ts";
import { createLogger } from "../src/http/logging.ts";
import { startTcpProxy, type TcpProxy } from "./support/tcp-proxy.ts";
import { startTestApp, type TestApp } from "./support/test-app.ts";
import { embedded, testDatabaseUrl } from "./support/test-database.ts";
import { aSentMessage, postWebhook, readMessage } from "./support/webhook.ts";

const APPLICATION_NAME = `webhook-storage-down-${process.pid}`;

// A fault on the real server only: the embedded database has no network path to cut.
describe.skipIf(embedded)("POST /webhooks/betatel when the database is unreachable", () => {
  let t: TestApp;
  let proxy: TcpProxy;
  let proxied: Database;
  let app: ReturnType<typeof createApp>;

  beforeAll(async () => {
    t = await startTestApp();
    const url = new URL(testDatabaseUrl() as string);
    proxy = await startTcpProxy(Number(url.port || 5432), url.hostname);
    url.host = `127.0.0.1:${proxy.port}`;
    url.searchParams.set("application_name", APPLICATION_NAME);
    proxied = await openDatabase({ url: url.toString(), dataDir: "", poolSize: 2 });
    const config = loadConfig({ NODE_ENV: "test", LOG_LEVEL: "silent", BETATEL_BASE_URL: t.betatel.url });
    const betatel = createBetatelClient({ baseUrl: t.betatel.url, timeoutMs: 1000, apiKey: "k", accountId: "a" });
    app = createApp({ config, db: proxied, betatel, logger: createLogger("silent") });
  });
  afterAll(async () => {
    await proxied?.close();
    await proxy?.close();
    await t?.close();
  });

  it.each([
    ["a single status", (uuid: string) => ({ uuid, status: "DELIVERED" })],
    [
      "a batch",
      (uuid: string) => ({
        statuses: [
          { uuid, status: "SENT" },
          { uuid, status: "DELIVERED" },
        ],
      }),
    ],
  ])("when %s arrives, then it answers 503 and the sender's retry after recovery applies it", async (_case, body) => {
    const uuid = await aSentMessage(t.app);
    // Warm the pool so the cut also breaks connections that were open.
    expect((await postWebhook(app, [])).status).toBe(200);
    await proxy.stop();
    try {
      const down = await postWebhook(app, body(uuid));
      expect(down.status).toBe(503);
      expect(down.headers["content-type"]).toMatch(/application\/problem\+json/);
      expect(down.headers["retry-after"]).toBeDefined();
      expect(down.body.code).toBe("storage_unavailable");
    } finally {
      await proxy.start();
    }
    expect((await readMessage(t.app, uuid)).status).toBe("PENDING");
    const retry = await postWebhook(app, body(uuid));
    expect(retry.status).toBe(200);
    expect(retry.body.results.at(-1).outcome).toBe("applied");
    expect((await readMessage(t.app, uuid)).status).toBe("DELIVERED");
  });

  it("when the server ends the service's sessions, then the webhook answers 200 or 503, never 500, and then recovers", async () => {
    const uuid = await aSentMessage(t.app);
    expect((await postWebhook(app, [])).status).toBe(200);
    const { rows } = await t.db.pool.query(
      "SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity WHERE application_name = $1",
      [APPLICATION_NAME],
    );
    expect(rows[0].n).toBeGreaterThan(0);
    const first = await postWebhook(app, { uuid, status: "SENT" });
    expect([200, 503]).toContain(first.status);
    const retry = await postWebhook(app, { uuid, status: "SENT" });
    expect(retry.status).toBe(200);
    expect((await readMessage(t.app, uuid)).status).toBe("SENT");
  });
});
