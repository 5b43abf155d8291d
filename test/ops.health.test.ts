import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import type pg from "pg";
import request from "supertest";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { createApp } from "../src/app.ts";
import { createBetatelClient } from "../src/betatel/client.ts";
import { loadConfig } from "../src/config.ts";
import { type Database, openDatabase } from "../src/db/database.ts";
import { applyMigrations } from "../src/db/migrate.ts";
import { createLogger } from "../src/http/logging.ts";
import { createScratchDatabase, openDatabaseAt, type ScratchDatabase } from "./support/scratch-database.ts";
import { aUuid, startTestApp, startTestAppOn, type TestApp } from "./support/test-app.ts";
import { embedded } from "./support/test-database.ts";

let t: TestApp;
beforeAll(async () => {
  t = await startTestApp({ API_KEYS: "health-key" });
});
afterAll(() => t.close());

describe("GET /healthz and /readyz", () => {
  it("when the database answers, then both are 200, without an API key", async () => {
    const health = await request(t.app).get("/healthz");
    expect(health.status).toBe(200);
    expect(health.body).toEqual({ status: "ok" });
    const ready = await request(t.app).get("/readyz");
    expect(ready.status).toBe(200);
    expect(ready.body).toEqual({ status: "ready", database: "up" });
  });

  describe("when the database cannot be reached", () => {
    let down: Database;
    beforeAll(async () => {
      // A real pool pointed at a port where nothing listens: every connection is refused.
      down = await openDatabase({ url: "postgresql://postgres@127.0.0.1:9/none", dataDir: "", poolSize: 1 });
    });
    afterAll(() => down.close());

    it("then /readyz is 503 problem+json and /healthz still 200", async () => {
      const app = createApp({
        config: loadConfig({ NODE_ENV: "test" }),
        db: down,
        betatel: createBetatelClient({ baseUrl: "http://127.0.0.1:9", apiKey: "", accountId: "", timeoutMs: 100 }),
        logger: createLogger("silent"),
      });
      const ready = await request(app).get("/readyz");
      expect(ready.status).toBe(503);
      expect(ready.headers["content-type"]).toMatch(/^application\/problem\+json/);
      expect(ready.body).toMatchObject({ status: 503, code: "storage_unavailable", database: "down" });
      expect((await request(app).get("/healthz")).status).toBe(200);
      // The gauge cannot count without the database, but the scrape itself still answers.
      expect((await request(app).get("/metrics")).status).toBe(200);
    });
  });
});

describe.skipIf(embedded)("GET /readyz on a Postgres server", () => {
  let scratch: ScratchDatabase;
  let app: TestApp;
  beforeAll(async () => {
    scratch = await createScratchDatabase("ready");
    app = await startTestAppOn(await openDatabaseAt(scratch.url, 2));
  });
  afterAll(async () => {
    await app.close();
    await scratch.drop();
  });

  const readyz = async () => {
    const started = Date.now();
    const res = await request(app.app).get("/readyz");
    return { res, ms: Date.now() - started };
  };

  it("when the service's own read cannot run (its table is gone) though SELECT 1 can, then 503", async () => {
    await scratch.query("ALTER TABLE messages RENAME TO messages_moved");
    try {
      const { res } = await readyz();
      expect(res.status).toBe(503);
      expect(res.headers["retry-after"]).toBe("5");
      expect(res.body).toMatchObject({ code: "storage_unavailable", database: "down" });
    } finally {
      await scratch.query("ALTER TABLE messages_moved RENAME TO messages");
    }
    expect((await readyz()).res.status).toBe(200);
  });

  it("when every pool connection is busy, then it still answers 200 at once, from its own connection", async () => {
    const held: pg.PoolClient[] = [];
    try {
      for (let i = 0; i < 2; i++) held.push(await app.db.pool.connect());
      const { res, ms } = await readyz();
      expect(res.status).toBe(200);
      expect(ms).toBeLessThan(1_500);
    } finally {
      for (const client of held) client.release();
    }
  });

  it("when its probe is stuck behind a lock, then 503 within about 2 s, and ready again once the lock goes", async () => {
    const blocker = await openDatabaseAt(scratch.url, 1);
    const client = await blocker.pool.connect();
    try {
      await client.query("BEGIN");
      await client.query("LOCK TABLE messages IN ACCESS EXCLUSIVE MODE");
      const { res, ms } = await readyz();
      expect(res.status).toBe(503);
      expect(res.body.database).toBe("down");
      expect(ms).toBeGreaterThanOrEqual(1_900);
      expect(ms).toBeLessThan(3_000);
    } finally {
      await client.query("ROLLBACK");
      client.release();
      await blocker.close();
    }
    // The stuck probe's connection was dropped or freed: the next probe is served.
    let status = 0;
    for (let attempt = 0; attempt < 5 && status !== 200; attempt++) status = (await readyz()).res.status;
    expect(status).toBe(200);
  });

  it("when the database only accepts reads (a standby after failover), then 503 database read-only", async () => {
    const admin = await openDatabaseAt(inject("adminDatabaseUrl"), 1);
    await admin.pool.query(`ALTER DATABASE ${scratch.name} SET default_transaction_read_only = on`);
    // A new app: its connections are new sessions, which take the setting.
    const fresh = await startTestAppOn(await openDatabaseAt(scratch.url, 2));
    try {
      const { res } = await request(fresh.app)
        .get("/readyz")
        .then((res) => ({ res }));
      expect(res.status).toBe(503);
      expect(res.body).toMatchObject({ code: "storage_unavailable", database: "read-only" });
      // Reads still work, which is why a read alone is not enough.
      expect((await request(fresh.app).get(`/v1/messages/${aUuid()}`)).status).toBe(404);
    } finally {
      await admin.pool.query(`ALTER DATABASE ${scratch.name} RESET default_transaction_read_only`);
      await admin.close();
      await fresh.close();
    }
  });
});

describe("GET /readyz on the embedded database", () => {
  let dataDir: string;
  let app: TestApp;
  beforeAll(async () => {
    dataDir = await mkdtemp(path.join(tmpdir(), "otp-pglite-ready-"));
    const db = await openDatabase({ url: undefined, dataDir, poolSize: 1 });
    await applyMigrations(db.pool);
    app = await startTestAppOn(db);
  });
  afterAll(async () => {
    await app.close();
    await rm(dataDir, { recursive: true, force: true });
  });

  it("when the session cannot prepare the service's read (a leftover statement of that name), then 503", async () => {
    // The state the one-session database was left in when a replaced connection's statements outlived it.
    await app.db.pool.query("PREPARE find_message AS SELECT 1");
    const res = await request(app.app).get("/readyz");
    expect(res.status).toBe(503);
    expect(res.body.database).toBe("down");
    // The failed connection was dropped, and its successor starts from a reset session.
    expect((await request(app.app).get("/readyz")).status).toBe(200);
    expect((await request(app.app).get(`/v1/messages/${aUuid()}`)).status).toBe(404);
  });
});
