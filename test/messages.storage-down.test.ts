import { connect, createServer, type Server, type Socket } from "node:net";
import type { Express } from "express";
import request from "supertest";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { createApp } from "../src/app.ts";
import { createBetatelClient } from "../src/betatel/client.ts";
import { loadConfig } from "../src/config.ts";
import { type Database, openDatabase } from "../src/db/database.ts";
import { createLogger } from "../src/http/logging.ts";
import { type FakeBetatel, startFakeBetatel } from "./support/fake-betatel.ts";
import { messagesTo } from "./support/message-tables.ts";
import { aPhoneNumber, aUuid, LogCapture, startTestApp, TEST_BETATEL, type TestApp } from "./support/test-app.ts";
import { embedded, openTestDatabase, testDatabaseUrl } from "./support/test-database.ts";

/** A TCP proxy in front of PostgreSQL that this test can take down and bring back (the server itself stays up). */
class StoppableProxy {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  port = 0;
  constructor(private readonly target: { host: string; port: number }) {}

  async start(): Promise<void> {
    this.server = createServer((client) => {
      const upstream = connect(this.target.port, this.target.host);
      for (const socket of [client, upstream]) {
        this.sockets.add(socket);
        socket.on("close", () => this.sockets.delete(socket));
        socket.on("error", () => {
          client.destroy();
          upstream.destroy();
        });
      }
      client.pipe(upstream).pipe(client);
    });
    await new Promise<void>((resolve) => this.server?.listen(this.port, "127.0.0.1", resolve));
    this.port = (this.server.address() as { port: number }).port;
  }

  /** Refuses new connections and cuts the open ones, as a database going away does. */
  stop(): void {
    this.server?.close();
    for (const socket of this.sockets) socket.destroy();
  }
}

const realPostgres = testDatabaseUrl();

describe.skipIf(embedded)("POST /v1/messages when the database is down", () => {
  let proxy: StoppableProxy;
  let db: Database;
  let direct: Database;
  let betatel: FakeBetatel;
  let app: Express;

  beforeAll(async () => {
    const url = new URL(realPostgres ?? "");
    proxy = new StoppableProxy({ host: url.hostname, port: Number(url.port || 5432) });
    await proxy.start();
    url.host = `127.0.0.1:${proxy.port}`;
    db = await openDatabase({ url: url.toString(), dataDir: "", poolSize: 2 });
    direct = await openTestDatabase();
    betatel = await startFakeBetatel();
    const config = loadConfig({
      NODE_ENV: "test",
      BETATEL_BASE_URL: betatel.url,
      BETATEL_API_KEY: TEST_BETATEL.apiKey,
      BETATEL_ACCOUNT_ID: TEST_BETATEL.accountId,
      BETATEL_TIMEOUT_MS: "1000",
    });
    const client = createBetatelClient({
      baseUrl: betatel.url,
      timeoutMs: config.BETATEL_TIMEOUT_MS,
      apiKey: TEST_BETATEL.apiKey,
      accountId: TEST_BETATEL.accountId,
    });
    app = createApp({ config, db, betatel: client, logger: createLogger("info", new LogCapture()) });
  });
  afterAll(async () => {
    proxy.stop();
    await betatel.close();
    await db.close();
    await direct.close();
  });
  beforeEach(async () => {
    betatel.reset();
    proxy.stop();
    await proxy.start();
  });

  it("when the database is unreachable before sending, then 503 storage_unavailable and Betatel is not called", async () => {
    proxy.stop();

    const res = await request(app).post("/v1/messages").send({ to: aPhoneNumber(), text: "1234" });

    expect(res.status).toBe(503);
    expect(res.body.code).toBe("storage_unavailable");
    expect(res.headers["retry-after"]).toBeDefined();
    expect(betatel.requests).toHaveLength(0);
  });

  it("when the database is unreachable with an Idempotency-Key, then 503 and Betatel is not called", async () => {
    proxy.stop();

    const res = await request(app)
      .post("/v1/messages")
      .set("Idempotency-Key", `k-${aUuid()}`)
      .send({ to: aPhoneNumber(), text: "1234" });

    expect(res.status).toBe(503);
    expect(res.body.code).toBe("storage_unavailable");
    expect(betatel.requests).toHaveLength(0);
  });

  it("when the database goes away after Betatel accepted, then 503 storage_unavailable carries the uuid", async () => {
    const uuid = aUuid();
    const to = aPhoneNumber();
    betatel.always(() => {
      proxy.stop();
      return { status: 200, body: { uuid, to } };
    });

    const res = await request(app).post("/v1/messages").send({ to, text: "1234" });

    expect(res.status).toBe(503);
    expect(res.body).toMatchObject({ code: "storage_unavailable", uuid });
    expect(betatel.requests).toHaveLength(1);
    expect(await messagesTo(direct, to)).toBe(0);
  });

  it("when the database connection is cut right after Betatel accepted and comes back, then storing is retried and the send answers 201", async () => {
    const uuid = aUuid();
    const to = aPhoneNumber();
    betatel.always(() => {
      // Every pooled connection is cut, new ones are refused for a moment: a brief outage mid-send.
      proxy.stop();
      setTimeout(() => void proxy.start(), 700);
      return { status: 200, body: { uuid, to } };
    });

    const res = await request(app).post("/v1/messages").send({ to, text: "1234" });

    expect(res.status).toBe(201);
    expect(res.body.uuid).toBe(uuid);
    expect(betatel.requests).toHaveLength(1);
    expect(await messagesTo(direct, to)).toBe(1);
  });

  it("when the database is back, then sending works again on the same pool", async () => {
    proxy.stop();
    const down = await request(app).post("/v1/messages").send({ to: aPhoneNumber(), text: "1234" });
    await proxy.start();

    const res = await request(app).post("/v1/messages").send({ to: aPhoneNumber(), text: "1234" });

    expect(down.status).toBe(503);
    expect(res.status).toBe(201);
  });
});

describe("POST /v1/messages when the database fails after Betatel accepted", () => {
  let t: TestApp;
  const doomedTo = aPhoneNumber();
  const doomedKeyPrefix = `fail-save-${aUuid()}`;

  beforeAll(async () => {
    t = await startTestApp();
    // Failures injected by triggers that touch only this file's rows (the run's database is shared).
    await t.db.pool.query(`
      CREATE FUNCTION send_test_fail() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN RAISE EXCEPTION 'injected failure' USING ERRCODE = TG_ARGV[0]; END $$;
      CREATE TRIGGER send_test_fail_insert BEFORE INSERT ON messages
        FOR EACH ROW WHEN (NEW."to" = '${doomedTo}') EXECUTE FUNCTION send_test_fail('P0001');
      CREATE TRIGGER send_test_fail_save BEFORE UPDATE ON idempotency_keys
        FOR EACH ROW WHEN (NEW.key LIKE '${doomedKeyPrefix}%') EXECUTE FUNCTION send_test_fail('08006');
    `);
  });
  afterAll(async () => {
    await t.db.pool.query(`
      DROP TRIGGER send_test_fail_insert ON messages;
      DROP TRIGGER send_test_fail_save ON idempotency_keys;
      DROP FUNCTION send_test_fail();
    `);
    await t.close();
  });

  it("when storing the message fails with any database error, then 503 storage_unavailable carries the uuid", async () => {
    const uuid = aUuid();
    t.betatel.reply({ status: 200, body: { uuid, to: doomedTo } });

    const res = await request(t.app).post("/v1/messages").send({ to: doomedTo, text: "1234" });

    expect(res.status).toBe(503);
    expect(res.body).toMatchObject({ code: "storage_unavailable", uuid });
    expect(JSON.stringify(res.body)).not.toContain("injected failure");
    // The failure is logged for operators, with the uuid and without the phone number.
    expect(t.logs.text).toContain(uuid);
    expect(t.logs.text).not.toContain(doomedTo);
  });

  it("when only recording the idempotent answer fails, then the stored message is still answered 201", async () => {
    const to = aPhoneNumber();

    const res = await request(t.app)
      .post("/v1/messages")
      .set("Idempotency-Key", `${doomedKeyPrefix}-1`)
      .send({ to, text: "1234" });

    expect(res.status).toBe(201);
    const read = await request(t.app).get(`/v1/messages/${res.body.uuid}`);
    expect(read.body).toMatchObject({ uuid: res.body.uuid, status: "PENDING" });
  });
});
