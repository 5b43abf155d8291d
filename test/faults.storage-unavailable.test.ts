import { randomBytes } from "node:crypto";
import pg from "pg";
import request from "supertest";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { openDatabase } from "../src/db/database.ts";
import { createScratchDatabase, openDatabaseAt, type ScratchDatabase } from "./support/scratch-database.ts";
import { aPhoneNumber, aUuid, startTestAppOn, type TestApp } from "./support/test-app.ts";
import { embedded } from "./support/test-database.ts";

// Real refusals from a real server, on a database of this file's own: the database refusing sessions
// (ALLOW_CONNECTIONS false, SQLSTATE 55000), a role over its connection limit (53300), and a database that
// only accepts reads (25006, as after a failover to a standby). Each must answer 503 `storage_unavailable`
// with Retry-After on every route family, never a 500.

let scratch: ScratchDatabase;
let admin: pg.Client;
let stored: string;
/** The stored message's `watchUrl`, path and query (what a browser's EventSource opens). */
let storedWatchPath: string;
beforeAll(async () => {
  if (embedded) return;
  scratch = await createScratchDatabase("unavail");
  admin = new pg.Client({ connectionString: inject("adminDatabaseUrl") });
  await admin.connect();
  const seed = await startTestAppOn(await openDatabaseAt(scratch.url, 2));
  const sent = await request(seed.app).post("/v1/messages").send({ to: aPhoneNumber(), text: "Your code is 135790" });
  expect(sent.status).toBe(201);
  stored = sent.body.uuid;
  const watchUrl = new URL(sent.body.watchUrl, "http://service.test");
  storedWatchPath = watchUrl.pathname + watchUrl.search;
  await seed.close();
});
afterAll(async () => {
  if (embedded) return;
  await admin.end();
  await scratch.drop();
});

function expectStorageUnavailable(res: request.Response, route: string) {
  expect({ route, status: res.status, code: res.body.code }).toEqual({
    route,
    status: 503,
    code: "storage_unavailable",
  });
  expect(res.headers["content-type"]).toMatch(/^application\/problem\+json/);
  expect(res.headers["retry-after"]).toBe("5");
}

/** Every route family that touches the database, each asserted as a caller sees it. */
async function expectEveryRouteUnavailable(t: TestApp, { writesOnly = false } = {}) {
  const send = () => request(t.app).post("/v1/messages").send({ to: aPhoneNumber(), text: "Your code is 135790" });
  const answers: [string, request.Response][] = [
    ["POST /v1/messages with Idempotency-Key", await send().set("Idempotency-Key", `unavail-${aUuid()}`)],
    [
      "POST /webhooks/betatel (stored uuid)",
      // A status the message does not have yet (SENT is stored once the first test recovers).
      await request(t.app).post("/webhooks/betatel").send({ uuid: stored, status: "DELIVERED" }),
    ],
    [
      "POST /webhooks/betatel (unknown uuid)",
      await request(t.app).post("/webhooks/betatel").send({ uuid: aUuid(), status: "SENT" }),
    ],
  ];
  answers.push(["POST /v1/messages", await send()]);
  if (!writesOnly) {
    answers.push(
      ["GET /v1/messages/:uuid", await request(t.app).get(`/v1/messages/${stored}`)],
      ["GET /v1/messages/:uuid?waitFor", await request(t.app).get(`/v1/messages/${stored}?waitFor=READ&timeout=1`)],
      ["GET /messages/:uuid", await request(t.app).get(`/messages/${stored}`)],
      ["GET /v1/messages/:uuid/stream", await request(t.app).get(`/v1/messages/${stored}/stream`)],
      ["GET /v1/messages", await request(t.app).get("/v1/messages?limit=5")],
      ["GET /readyz", await request(t.app).get("/readyz")],
    );
  }
  for (const [route, res] of answers) expectStorageUnavailable(res, route);
  expect(t.logs.text).not.toContain("unhandled error");
}

describe.skipIf(embedded)("when the database does not accept connections (ALLOW_CONNECTIONS false)", () => {
  it("then every route answers 503 with Retry-After, Betatel is never called, and all recover once it does", async () => {
    await admin.query(`ALTER DATABASE ${scratch.name} ALLOW_CONNECTIONS false`);
    // A new app: no connection is open yet, so every request must open one and is refused.
    const t = await startTestAppOn(await openDatabaseAt(scratch.url, 2));
    try {
      await expectEveryRouteUnavailable(t);
      expect(t.betatel.requests).toHaveLength(0);
      // A browser's EventSource gives up for good on a 503: its watchUrl stream opens, asks it to come back, ends.
      const browserStream = await request(t.app).get(storedWatchPath).set("accept", "text/event-stream");
      expect(browserStream.status).toBe(200);
      expect(browserStream.headers["content-type"]).toMatch(/^text\/event-stream/);
      expect(browserStream.text).toMatch(/^retry: 5000\n\n: storage_unavailable: /);
      expect(browserStream.text).not.toContain("data:");
      // The refusal really was the one under test.
      expect(t.logs.text).toContain('"reason":"55000"');

      await admin.query(`ALTER DATABASE ${scratch.name} ALLOW_CONNECTIONS true`);
      expect((await request(t.app).get("/readyz")).status).toBe(200);
      expect((await request(t.app).get(`/v1/messages/${stored}`)).status).toBe(200);
      const hook = await request(t.app).post("/webhooks/betatel").send({ uuid: stored, status: "SENT" });
      expect(hook.body.results).toEqual([{ uuid: stored, status: "SENT", outcome: "applied" }]);
    } finally {
      await admin.query(`ALTER DATABASE ${scratch.name} ALLOW_CONNECTIONS true`);
      await t.close();
    }
  });
});

describe.skipIf(embedded)("when the service's role is over its connection limit (too many connections)", () => {
  it("then every route answers 503 with Retry-After", async () => {
    const role = `otp_limited_${randomBytes(4).toString("hex")}`;
    await admin.query(`CREATE ROLE ${role} LOGIN CONNECTION LIMIT 0`);
    const url = new URL(scratch.url);
    url.username = role;
    const t = await startTestAppOn(await openDatabase({ url: url.toString(), dataDir: "", poolSize: 2 }));
    try {
      await expectEveryRouteUnavailable(t);
      expect(t.logs.text).toContain('"reason":"53300"');
    } finally {
      await t.close();
      await admin.query(`DROP ROLE ${role}`);
    }
  });
});

describe.skipIf(embedded)("when the database only accepts reads (a standby after a failover)", () => {
  it("then writes (webhook, sends) answer 503 with Retry-After before Betatel is called, and reads still work", async () => {
    await admin.query(`ALTER DATABASE ${scratch.name} SET default_transaction_read_only = on`);
    const t = await startTestAppOn(await openDatabaseAt(scratch.url, 2));
    try {
      await expectEveryRouteUnavailable(t, { writesOnly: true });
      expect(t.betatel.requests).toHaveLength(0);
      expect(t.logs.text).toContain('"reason":"25006"');
      expect((await request(t.app).get(`/v1/messages/${stored}`)).status).toBe(200);
      // A repeat is answered from what is stored, without a write: a read-only database answers it.
      const repeat = await request(t.app).post("/webhooks/betatel").send({ uuid: stored, status: "SENT" });
      expect(repeat.body.results).toEqual([{ uuid: stored, status: "SENT", outcome: "duplicate" }]);
    } finally {
      await admin.query(`ALTER DATABASE ${scratch.name} RESET default_transaction_read_only`);
      await t.close();
    }
  });
});

/**
 * Runs `work` against an app whose queries give up after `queryTimeoutMs`, while another session holds `tables`
 * locked exclusively until `unlock` (or the end).
 */
async function withTablesLocked(
  tables: string,
  queryTimeoutMs: number,
  work: (t: TestApp, unlock: () => Promise<void>) => Promise<void>,
) {
  const t = await startTestAppOn(await openDatabase({ url: scratch.url, dataDir: "", poolSize: 3, queryTimeoutMs }));
  const locker = new pg.Client({ connectionString: scratch.url });
  await locker.connect();
  let locked = false;
  const unlock = async () => {
    if (locked) await locker.query("ROLLBACK");
    locked = false;
  };
  try {
    await locker.query("BEGIN");
    await locker.query(`LOCK TABLE ${tables} IN ACCESS EXCLUSIVE MODE`);
    locked = true;
    await work(t, unlock);
  } finally {
    await unlock();
    await locker.end();
    await t.close();
  }
}

describe.skipIf(embedded)("when another session holds an exclusive lock on the message tables", () => {
  it("then reads, live status and the webhook answer 503 after the query timeout instead of waiting for the lock, and serve once it goes", async () => {
    const queryTimeoutMs = 1_000;
    await withTablesLocked("messages, message_events", queryTimeoutMs, async (t, unlock) => {
      const routes: [string, () => request.Test][] = [
        ["GET /v1/messages/:uuid", () => request(t.app).get(`/v1/messages/${stored}`)],
        ["GET /v1/messages", () => request(t.app).get("/v1/messages?limit=5")],
        ["GET /v1/messages/:uuid?waitFor", () => request(t.app).get(`/v1/messages/${stored}?waitFor=READ&timeout=1`)],
        ["GET /v1/messages/:uuid/stream", () => request(t.app).get(`/v1/messages/${stored}/stream`)],
        [
          "POST /webhooks/betatel",
          () => request(t.app).post("/webhooks/betatel").send({ uuid: stored, status: "DELIVERED" }),
        ],
      ];
      for (const [route, call] of routes) {
        const started = Date.now();
        const res = await call().timeout(queryTimeoutMs * 8);
        expectStorageUnavailable(res, route);
        expect(Date.now() - started, route).toBeLessThan(queryTimeoutMs * 4);
      }
      expect(t.logs.text).toContain("Query read timeout");

      // Many watchers at once: each waits for a read at most the timeout, not behind every stuck read before it.
      const started = Date.now();
      const streams = await Promise.all(
        Array.from({ length: 8 }, () =>
          request(t.app)
            .get(`/v1/messages/${aUuid()}/stream`)
            .timeout(queryTimeoutMs * 8),
        ),
      );
      for (const res of streams) expectStorageUnavailable(res, "GET /v1/messages/:uuid/stream, 8 at once");
      expect(Date.now() - started).toBeLessThan(queryTimeoutMs * 3);

      await unlock();
      // The timed-out queries' connections were dropped: fresh ones serve.
      expect((await request(t.app).get(`/v1/messages/${stored}`)).status).toBe(200);
    });
  });
});

describe.skipIf(embedded)("when the message table is locked while an OTP Betatel accepted is being stored", () => {
  it("then 503 with the uuid (replayed for its Idempotency-Key), the process keeps serving, and the OTP is not sent twice", async () => {
    await withTablesLocked("messages", 1_000, async (t, unlock) => {
      const body = { to: aPhoneNumber(), text: "Your code is 246801" };
      const key = `stuck-store-${aUuid()}`;
      const send = () => request(t.app).post("/v1/messages").set("Idempotency-Key", key).send(body);
      const first = await send();
      expect(first.status).toBe(503);
      expect(first.body).toMatchObject({ code: "storage_unavailable", uuid: expect.any(String) });
      expect(t.betatel.requests).toHaveLength(1);

      await unlock();
      const again = await send();
      expect(again.status).toBe(503);
      expect(again.body.uuid).toBe(first.body.uuid);
      expect(t.betatel.requests).toHaveLength(1);
      expect((await request(t.app).get(`/v1/messages/${stored}`)).status).toBe(200);
    });
  }, 30_000);
});

describe.skipIf(embedded)("when a table a transaction needs is locked", () => {
  it("then the request answers 503 within the query timeout, not after a ROLLBACK queued behind the stuck statement", async () => {
    const queryTimeoutMs = 2_000;
    await withTablesLocked("verifications", queryTimeoutMs, async (t) => {
      const started = Date.now();
      const res = await request(t.app).post("/v1/verifications").send({ to: aPhoneNumber() }).timeout(10_000);
      expectStorageUnavailable(res, "POST /v1/verifications");
      expect(Date.now() - started).toBeLessThan(queryTimeoutMs + 1_000);
      expect(t.betatel.requests).toHaveLength(0);
    });
  });
});

describe.skipIf(embedded)("when the Idempotency-Key table is locked", () => {
  it("then sends with a key answer 503 without calling Betatel, and no connection is left behind once the lock goes", async () => {
    await withTablesLocked("idempotency_keys", 1_000, async (t, unlock) => {
      const sends = await Promise.all(
        Array.from({ length: 4 }, () =>
          request(t.app)
            .post("/v1/messages")
            .set("Idempotency-Key", `locked-keys-${aUuid()}`)
            .send({ to: aPhoneNumber(), text: "Your code is 975310" })
            .timeout(15_000),
        ),
      );
      for (const res of sends) expectStorageUnavailable(res, "POST /v1/messages with Idempotency-Key");
      expect(t.betatel.requests).toHaveLength(0);
      await new Promise((resolve) => setTimeout(resolve, 2_500)); // longer than two timeouts

      await unlock();
      // The pool (3 connections) serves again: none is stuck in a transaction the stall left open.
      for (let i = 0; i < 4; i++) {
        const res = await request(t.app)
          .post("/v1/messages")
          .set("Idempotency-Key", `after-lock-${aUuid()}`)
          .send({ to: aPhoneNumber(), text: "Your code is 975311" })
          .timeout(15_000);
        expect(res.status).toBe(201);
      }
    });
  }, 60_000);
});
