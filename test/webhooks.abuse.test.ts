import type pg from "pg";
import request from "supertest";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { applyStatusEvents } from "../src/tracking/apply.ts";
import { insertMessage } from "./support/message-rows.ts";
import { aPhoneNumber, aUuid, startTestApp, type TestApp } from "./support/test-app.ts";
import { embedded } from "./support/test-database.ts";
import { postWebhook, readMessage, WEBHOOK } from "./support/webhook.ts";

let t: TestApp;
beforeAll(async () => {
  t = await startTestApp({ WEBHOOK_BUFFERED_PER_MINUTE: "2000" });
});
afterAll(() => t.close());

/** Counts the statements the service sends to the database while `work` runs. */
async function countStatements(pool: pg.Pool, work: () => Promise<unknown>): Promise<number> {
  let count = 0;
  const wrapped = new WeakSet<pg.PoolClient>();
  const onAcquire = (client: pg.PoolClient) => {
    if (wrapped.has(client)) return;
    wrapped.add(client);
    const query = client.query.bind(client) as (...args: unknown[]) => unknown;
    (client as unknown as { query: unknown }).query = (...args: unknown[]) => {
      if (counting) count++;
      return query(...args);
    };
  };
  let counting = true;
  pool.on("acquire", onAcquire);
  try {
    await work();
  } finally {
    counting = false;
    pool.off("acquire", onAcquire);
  }
  return count;
}

const STATUSES = ["SENT", "DELIVERED", "READ", "FAILED", "EXPIRED"];

describe("POST /webhooks/betatel with a batch repeating (uuid, status) pairs", () => {
  it("when 1,000 items repeat five statuses of one uuid, then it costs a few statements and answers one result per item", async () => {
    const { uuid } = await insertMessage(t.db.pool);
    const items = Array.from({ length: 1000 }, (_, i) => ({ uuid, status: STATUSES[i % STATUSES.length] }));
    let res: request.Response | undefined;
    const statements = await countStatements(t.db.pool, async () => {
      res = await postWebhook(t.app, items);
    });
    expect(res?.status).toBe(200);
    const outcomes = res?.body.results.map((r: { outcome: string }) => r.outcome);
    expect(outcomes).toHaveLength(1000);
    // SENT, DELIVERED, READ move the status; FAILED and EXPIRED contradict READ; every repeat is a duplicate.
    expect(outcomes.slice(0, 5)).toEqual(["applied", "applied", "applied", "rejected", "rejected"]);
    expect(new Set(outcomes.slice(5))).toEqual(new Set(["duplicate"]));
    expect(statements).toBeLessThanOrEqual(12);
    expect((await readMessage(t.app, uuid)).status).toBe("READ");
  });
});

describe("POST /webhooks/betatel with many unknown uuids", () => {
  it("when 500 unknown uuids arrive in one request, then they are buffered in a few transactions of 64 uuids, not one each", async () => {
    const items = Array.from({ length: 500 }, () => ({ uuid: aUuid(), status: "SENT" }));
    let res: request.Response | undefined;
    const statements = await countStatements(t.db.pool, async () => {
      res = await postWebhook(t.app, items);
    });
    expect(new Set(res?.body.results.map((r: { outcome: string }) => r.outcome))).toEqual(new Set(["buffered"]));
    // One statement stores them; settling takes BEGIN, lock, read, COMMIT per 64 uuids (8 chunks).
    expect(statements).toBeLessThanOrEqual(1 + 8 * 4);
  });

  it("when buffered statuses of rows that now exist are settled, then their uuids are reported", async () => {
    const [a, b] = [aUuid(), aUuid()];
    await postWebhook(t.app, [
      { uuid: a, status: "SENT" },
      { uuid: b, status: "DELIVERED" },
    ]);
    // The rows appear without the send path settling (as after a crash between the two steps).
    await insertMessage(t.db.pool, { uuid: a });
    await insertMessage(t.db.pool, { uuid: b });
    const result = await applyStatusEvents(t.db.pool, [
      {
        uuid: a,
        status: "SENT",
        occurredAt: null,
        source: "webhook",
        payload: {},
        errorCode: null,
        errorMessage: null,
        wamId: null,
      },
      {
        uuid: b,
        status: "DELIVERED",
        occurredAt: null,
        source: "webhook",
        payload: {},
        errorCode: null,
        errorMessage: null,
        wamId: null,
      },
    ]);
    expect(result.outcomes).toEqual(["duplicate", "duplicate"]);
    expect([...result.settled].sort()).toEqual([a, b].sort());
    expect((await readMessage(t.app, b)).status).toBe("DELIVERED");
  });
});

describe("buffered statuses settled in the order they occurred", () => {
  const failedThenDelivered = (uuid: string) => [
    { uuid, status: "FAILED", timestamp: "2026-11-27T10:00:00Z", error: "undeliverable" },
    { uuid, status: "DELIVERED", timestamp: "2026-11-27T10:00:05Z" },
  ];

  it("when FAILED then DELIVERED arrive before the row, then the message ends as when they arrive after it", async () => {
    const before = aUuid();
    await postWebhook(t.app, failedThenDelivered(before));
    const to = aPhoneNumber();
    t.betatel.reply({ status: 200, body: { uuid: before, to } });
    expect((await request(t.app).post("/v1/messages").send({ to, text: "Your code is 482910" })).status).toBe(201);

    const { uuid: after } = await insertMessage(t.db.pool);
    await postWebhook(t.app, failedThenDelivered(after));

    expect((await readMessage(t.app, after)).status).toBe("FAILED");
    expect((await readMessage(t.app, before)).status).toBe("FAILED");
  });
});

describe("stored raw payloads", () => {
  it("when an item carries huge unknown fields and a nested text, then the known fields and at most 4 KiB of the rest are kept, with no text", async () => {
    const uuid = aUuid();
    const item = {
      uuid,
      status: "FAILED",
      wam_id: "wamid.1",
      error: { code: 131026, message: "undeliverable", details: "x".repeat(700_000) },
      junk: "y".repeat(200_000),
      extra: { note: "kept", text: "Your code is 482910", deeper: [{ text: "482910" }] },
    };
    expect((await postWebhook(t.app, item)).status).toBe(200);
    const { rows } = await t.db.pool.query(
      "SELECT payload, octet_length(payload::text) AS size FROM message_events WHERE uuid = $1",
      [uuid],
    );
    const payload = rows[0].payload;
    expect(rows[0].size).toBeLessThan(4096 + 1024);
    expect(payload).toMatchObject({
      uuid,
      status: "FAILED",
      wam_id: "wamid.1",
      error: { code: 131026, message: "undeliverable" },
    });
    expect(payload.extra).toEqual({ note: "kept", deeper: [{}] });
    expect(JSON.stringify(payload)).not.toContain("482910");
  });
});

describe("buffered rows per sender", () => {
  let capped: TestApp;
  beforeAll(async () => {
    capped = await startTestApp({ WEBHOOK_BUFFERED_PER_MINUTE: "50" });
  });
  afterAll(() => capped.close());

  it("when a sender has buffered its window's share, then unknown uuids are refused with 429 and known ones still apply", async () => {
    const unknown = (n: number) => Array.from({ length: n }, () => ({ uuid: aUuid(), status: "SENT" }));
    expect((await postWebhook(capped.app, unknown(40))).status).toBe(200);
    expect((await postWebhook(capped.app, unknown(40))).status).toBe(200);
    const refused = await postWebhook(capped.app, unknown(1));
    expect(refused.status).toBe(429);
    expect(refused.headers["content-type"]).toMatch(/application\/problem\+json/);
    expect(refused.headers["retry-after"]).toMatch(/^\d+$/);
    expect(refused.body.code).toBe("too_many_buffered");

    const { uuid } = await insertMessage(capped.db.pool);
    const known = await postWebhook(capped.app, { uuid, status: "DELIVERED" });
    expect(known.body.results).toEqual([{ uuid, status: "DELIVERED", outcome: "applied" }]);
  });
});

// The multi-step batches' lock of a uuid: its bucket (of 64) under the service's two-int advisory namespace.
const BUCKET_LOCK = "7304304, (hashtextextended($1, 0) & 63)::int";

/** Whether a session comes to wait for the batch lock of `uuid` (polled up to 3 s, or until `done()`). */
async function lockWaiterAppears(uuid: string, done: () => boolean): Promise<boolean> {
  for (let i = 0; i < 60 && !done(); i++) {
    const { rows } = await t.db.pool.query(
      `SELECT count(*)::int AS n FROM pg_locks
       WHERE locktype = 'advisory' AND NOT granted AND objsubid = 2
         AND classid::bigint = 7304304 AND objid::bigint = hashtextextended($1, 0) & 63`,
      [uuid],
    );
    if (rows[0].n > 0) return true;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return false;
}

describe.skipIf(embedded)("lock order of multi-step batches", () => {
  let holder: pg.PoolClient | undefined;
  afterEach(async () => {
    await holder?.query("ROLLBACK").catch(() => {});
    holder?.release();
    holder = undefined;
  });

  it("when a multi-step batch names a uuid another batch holds, then it waits before inserting anything", async () => {
    const [repeated, once] = [aUuid(), aUuid()];
    // What a concurrent multi-step batch holds while inserting `once`'s events.
    holder = await t.db.pool.connect();
    await holder.query("BEGIN");
    await holder.query(`SELECT pg_advisory_xact_lock(${BUCKET_LOCK})`, [once]);
    const batch = postWebhook(t.app, [
      { uuid: repeated, status: "SENT" },
      { uuid: once, status: "SENT" },
      { uuid: repeated, status: "DELIVERED" },
    ]).then((res) => res);
    let answered = false;
    void batch.then(() => {
      answered = true;
    });
    expect(await lockWaiterAppears(once, () => answered)).toBe(true);
    // Waiting before its inserts: nothing of the batch is stored yet (after them, two batches could deadlock).
    const stored = await t.db.pool.query("SELECT count(*)::int AS n FROM message_events WHERE uuid = $1", [repeated]);
    expect(stored.rows[0].n).toBe(0);
    await holder.query("COMMIT");
    expect((await batch).status).toBe(200);
  });
});

describe("WEBHOOK_ALLOWED_IPS", () => {
  let allow: TestApp;
  beforeAll(async () => {
    allow = await startTestApp({ WEBHOOK_ALLOWED_IPS: "10.0.0.0/8, 2001:db8::/32", TRUST_PROXY: "loopback" });
  });
  afterAll(() => allow.close());

  it("when a request comes from outside the list, then it gets 403 problem+json", async () => {
    const res = await request(allow.app)
      .post(WEBHOOK)
      .set({ "content-type": "application/json", "x-forwarded-for": "192.0.2.7" })
      .send(JSON.stringify({ uuid: aUuid(), status: "SENT" }));
    expect(res.status).toBe(403);
    expect(res.headers["content-type"]).toMatch(/application\/problem\+json/);
    expect(res.body.code).toBe("forbidden");
  });

  it("when a trusted proxy forwards a request from a listed address, then it is accepted", async () => {
    const res = await request(allow.app)
      .post(WEBHOOK)
      .set({ "content-type": "application/json", "x-forwarded-for": "10.1.2.3" })
      .send(JSON.stringify({ uuid: aUuid(), status: "SENT" }));
    expect(res.status).toBe(200);
  });

  it("when TRUST_PROXY is unset, then a forwarded address is not believed", async () => {
    const direct = await startTestApp({ WEBHOOK_ALLOWED_IPS: "10.0.0.0/8" });
    try {
      const res = await request(direct.app)
        .post(WEBHOOK)
        .set({ "content-type": "application/json", "x-forwarded-for": "10.1.2.3" })
        .send(JSON.stringify({ uuid: aUuid(), status: "SENT" }));
      expect(res.status).toBe(403);
    } finally {
      await direct.close();
    }
  });
});
