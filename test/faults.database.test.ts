import pg from "pg";
import request from "supertest";
import { afterAll, beforeAll, beforeEach, describe, expect, inject, it } from "vitest";
import { createScratchDatabase, openDatabaseAt, type ScratchDatabase, TEST_OWNER } from "./support/scratch-database.ts";
import { startTcpProxy, type TcpProxy } from "./support/tcp-proxy.ts";
import { aPhoneNumber, aUuid, startTestAppOn, type TestApp } from "./support/test-app.ts";

// The app talks to its own scratch database through a proxy this file owns: stopping the proxy is a real
// outage for the app while the shared PostgreSQL server keeps serving every other test file.
let scratch: ScratchDatabase;
let proxy: TcpProxy;
let t: TestApp;
beforeAll(async () => {
  scratch = await createScratchDatabase("faults");
  proxy = await startTcpProxy();
  t = await startTestAppOn(await openDatabaseAt(proxy.via(scratch.url)));
});
afterAll(async () => {
  await t.close();
  await proxy.close();
  await scratch.drop();
});
beforeEach(async () => {
  t.betatel.reset();
  await proxy.start().catch(() => {}); // running already, unless a test left it stopped
});

const sendOtp = (headers: Record<string, string> = {}) =>
  request(t.app).post("/v1/messages").set(headers).send({ to: aPhoneNumber(), text: "Your code is 246810" });
const postStatus = (uuid: string, status: string) => request(t.app).post("/webhooks/betatel").send({ uuid, status });

function expectStorageUnavailable(res: request.Response) {
  expect(res.status).toBe(503);
  expect(res.headers["content-type"]).toMatch(/^application\/(problem\+)?json/);
  expect(res.body.code).toBe("storage_unavailable");
}

describe("when the database is unreachable (proxy stopped)", () => {
  it("then /readyz, the webhook, GET and POST answer 503 fast, Betatel is never called, and all recover without a restart", async () => {
    const before = await sendOtp();
    expect(before.status).toBe(201);
    t.betatel.reset();
    await proxy.stop();

    const started = Date.now();
    const ready = await request(t.app).get("/readyz");
    expect(ready.status).toBe(503);
    expect(ready.body).toMatchObject({ code: "storage_unavailable", database: "down" });
    expectStorageUnavailable(await postStatus(before.body.uuid, "SENT"));
    expectStorageUnavailable(await postStatus(aUuid(), "DELIVERED"));
    expectStorageUnavailable(await request(t.app).get(`/v1/messages/${before.body.uuid}`));
    const post = await sendOtp();
    expectStorageUnavailable(post);
    expect(post.headers["retry-after"]).toBeDefined();
    expectStorageUnavailable(await sendOtp({ "Idempotency-Key": `fault-${aUuid()}` }));
    expect(t.betatel.requests).toHaveLength(0);
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(t.logs.text).not.toContain("unhandled error");

    await proxy.start();
    expect((await request(t.app).get("/readyz")).status).toBe(200);
    const webhook = await postStatus(before.body.uuid, "SENT");
    expect(webhook.status).toBe(200);
    expect(webhook.body.results).toEqual([{ uuid: before.body.uuid, status: "SENT", outcome: "applied" }]);
    const after = await sendOtp();
    expect(after.status).toBe(201);
    expect(t.betatel.requests).toHaveLength(1);
    const read = await request(t.app).get(`/v1/messages/${after.body.uuid}`);
    expect(read.body.status).toBe("PENDING");
  });

  it("then a request that is waiting for a connection when the proxy dies answers 503, not 500", async () => {
    // Hold the line: the stop happens while requests are on the wire.
    const inFlight = Array.from({ length: 10 }, (_, i) =>
      i % 2 === 0 ? postStatus(aUuid(), "SENT") : request(t.app).get("/readyz"),
    );
    await proxy.stop();
    const answers = await Promise.all(inFlight);
    for (const res of answers) expect([200, 503]).toContain(res.status);
    await proxy.start();
    expect((await request(t.app).get("/readyz")).status).toBe(200);
  });
});

describe("when PostgreSQL terminates the app's connections (pg_terminate_backend)", () => {
  async function terminateAppConnections(): Promise<number> {
    const admin = new pg.Client({ connectionString: inject("adminDatabaseUrl") });
    await admin.connect();
    try {
      const { rows } = await admin.query(
        `SELECT pg_terminate_backend(pid) AS done FROM pg_stat_activity
         WHERE datname = $1 AND application_name <> $2 AND pid <> pg_backend_pid()`,
        [scratch.name, TEST_OWNER],
      );
      return rows.length;
    } finally {
      await admin.end();
    }
  }

  it("then requests answer 503 at worst and the pool reconnects on its own", async () => {
    // Warm the pool so there are connections to kill.
    await Promise.all(Array.from({ length: 5 }, () => request(t.app).get("/readyz")));
    expect(await terminateAppConnections()).toBeGreaterThan(0);

    // A killed session may be handed out before its error is seen: that request is a 503, the next ones are fine.
    const statuses: number[] = [];
    for (let i = 0; i < 10 && statuses.at(-1) !== 200; i++) statuses.push((await request(t.app).get("/readyz")).status);
    for (const status of statuses) expect([200, 503]).toContain(status);
    expect(statuses.at(-1)).toBe(200);
    const sent = await sendOtp();
    expect(sent.status).toBe(201);
    expect((await postStatus(sent.body.uuid, "DELIVERED")).body.results[0].outcome).toBe("applied");
  });

  it("then webhook batches cut mid-transaction store nothing half-way, the process survives, and a retry applies them", async () => {
    // Several rounds: the cut lands at different points of the transaction (BEGIN, statement, COMMIT).
    for (let round = 0; round < 5; round++) {
      const sent = await sendOtp();
      const uuids = [sent.body.uuid, aUuid(), aUuid()];
      const batch = uuids.map((uuid) => ({ uuid, status: "SENT" }));
      const [first] = await Promise.all([
        request(t.app).post("/webhooks/betatel").send(batch),
        terminateAppConnections(),
      ]);
      expect([200, 503]).toContain(first.status);
      const stored = await scratch.query<{ n: number }>(
        "SELECT count(*)::int AS n FROM message_events WHERE uuid = ANY($1) AND status = 'SENT'",
        [uuids],
      );
      // All or nothing: never one or two of the three. A 200 stored all three; a 503 stored none, or all three
      // when the session died after COMMIT reached the server but before its answer came back (the sender's
      // retry then sees `duplicate`: nothing is lost either way).
      expect([0, 3]).toContain(stored[0]?.n);
      if (first.status === 200) expect(stored[0]?.n).toBe(3);
      // Sessions killed a moment ago may still be handed out once: 503 then, like the sender, retry.
      let retry = await request(t.app).post("/webhooks/betatel").send(batch);
      for (let attempt = 0; retry.status === 503 && attempt < 5; attempt++) {
        retry = await request(t.app).post("/webhooks/betatel").send(batch);
      }
      expect(retry.status).toBe(200);
      const again = await scratch.query<{ n: number }>(
        "SELECT count(*)::int AS n FROM message_events WHERE uuid = ANY($1) AND status = 'SENT'",
        [uuids],
      );
      expect(again[0]?.n).toBe(3);
    }
  });
});

describe("when a query fails for a reason other than connectivity", () => {
  it("then 500 internal_error with no SQL or stack in the body, and the details only in the log", async () => {
    await scratch.query("ALTER TABLE message_events RENAME TO message_events_moved");
    try {
      for (const res of [await request(t.app).get(`/v1/messages/${aUuid()}`), await postStatus(aUuid(), "SENT")]) {
        expect(res.status).toBe(500);
        expect(res.headers["content-type"]).toMatch(/^application\/problem\+json/);
        expect(res.body).toEqual({
          type: "urn:whatsapp-otp-tracker:problem:internal_error",
          title: "Internal error",
          status: 500,
          detail: "Something went wrong on our side.",
          code: "internal_error",
        });
      }
      expect(t.logs.text).toContain("message_events");
    } finally {
      await scratch.query("ALTER TABLE message_events_moved RENAME TO message_events");
    }
    expect((await request(t.app).get("/readyz")).status).toBe(200);
  });
});
