import request from "supertest";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { RETRY_SCHEDULE_MS } from "../src/callbacks/deliveries.ts";
import { messageStatusEventSchema } from "../src/callbacks/routes.ts";
import { type CallbackReceiver, startCallbackReceiver } from "./support/callback-receiver.ts";
import { aTeam, aWorker, registerReceiver, sendAs } from "./support/callbacks.ts";
import { openIsolatedDatabase } from "./support/isolated-database.ts";
import { startTestAppOn, type TestApp } from "./support/test-app.ts";
import { postWebhook } from "./support/webhook.ts";

const owner = aTeam();
const other = aTeam();
let t: TestApp;
let receiver: CallbackReceiver;

beforeAll(async () => {
  // A database of its own: workers claim every team's due deliveries, and other files' servers run workers.
  t = await startTestAppOn(await openIsolatedDatabase(), { API_KEYS: `${owner.apiKeys},${other.apiKeys}` });
});
afterAll(() => t.close());
beforeEach(async () => {
  receiver = await startCallbackReceiver();
});
afterEach(async () => {
  await t.db.pool.query("DELETE FROM callback_endpoints WHERE team = ANY ($1)", [[owner.team, other.team]]);
  await receiver.close();
});

const deliveries = (status?: string, auth = owner.auth) =>
  request(t.app)
    .get("/v1/callbacks/deliveries")
    .query(status ? { status } : {})
    .set(auth);

describe("status callbacks", () => {
  it("when a webhook moves a message, then the team's endpoint gets each change signed, with its sequence", async () => {
    await registerReceiver(t.db, owner.team, receiver);
    const uuid = await sendAs(t.app, owner.auth);
    await postWebhook(t.app, [
      { uuid, status: "SENT", timestamp: "2026-11-28T10:00:00Z" },
      { uuid, status: "DELIVERED", timestamp: "2026-11-28T10:00:02Z" },
    ]).expect(200);

    await aWorker(t.db).runOnce();
    await aWorker(t.db).runOnce();
    const received = await receiver.waitFor(2);

    const message = (await request(t.app).get(`/v1/messages/${uuid}`).set(owner.auth)).body;
    // The message as GET returns it, without its events and its watchUrl (a browser link, not state).
    const { events: _events, watchUrl: _watchUrl, ...withoutEvents } = message;
    expect(received.map((r) => [r.event.type, r.event.data.status, r.event.data.sequence])).toEqual([
      ["message.status", "SENT", 2],
      ["message.status", "DELIVERED", 3],
    ]);
    expect(received[1]?.event.data).toEqual({ ...withoutEvents, team: owner.team, sequence: 3 });
    // The body is what OpenAPI's `webhooks` documents.
    expect(messageStatusEventSchema.safeParse(received[1]?.event).success).toBe(true);
    expect(received[0]?.headers["webhook-id"]).toBe(`msg_${uuid}_2`);
    expect(receiver.rejected).toBe(0);
  });

  it("when another team's message changes, then this team's endpoint hears nothing", async () => {
    await registerReceiver(t.db, owner.team, receiver);
    const uuid = await sendAs(t.app, other.auth);
    await postWebhook(t.app, { uuid, status: "SENT" }).expect(200);
    await aWorker(t.db).runOnce();
    expect(receiver.requests).toBe(0);
  });

  it("when a status changes nothing (duplicate or stale), then no callback is queued", async () => {
    await registerReceiver(t.db, owner.team, receiver);
    const uuid = await sendAs(t.app, owner.auth);
    await postWebhook(t.app, { uuid, status: "DELIVERED" }).expect(200);
    await postWebhook(t.app, [
      { uuid, status: "DELIVERED" },
      { uuid, status: "SENT" },
    ]).expect(200);
    const list = await deliveries().expect(200);
    expect(list.body.items.filter((d: { subject: string }) => d.subject === uuid)).toHaveLength(1);
  });

  it("when the receiver is down, then retries follow the schedule and every event arrives in order once it is up", async () => {
    await registerReceiver(t.db, owner.team, receiver);
    const clock = { now: new Date() };
    const worker = aWorker(t.db, { clock });
    const uuid = await sendAs(t.app, owner.auth);
    await postWebhook(t.app, { uuid, status: "SENT" }).expect(200);
    await postWebhook(t.app, { uuid, status: "DELIVERED" }).expect(200);
    await postWebhook(t.app, { uuid, status: "READ" }).expect(200);
    // The worker's clock starts after the events were queued (by the database's clock).
    clock.now = new Date(Date.now() + 1_000);

    receiver.respond = (res) => res.writeHead(503).end("down for maintenance");
    for (const [attempt, waitMs] of RETRY_SCHEDULE_MS.slice(0, 3).entries()) {
      // Only the oldest event of the message is tried: the others wait behind it.
      expect(await worker.runOnce()).toBe(1);
      const [first] = (await deliveries("pending").expect(200)).body.items.filter(
        (d: { subject: string; sequence: number }) => d.subject === uuid && d.sequence === 2,
      );
      expect(first).toMatchObject({ attempts: attempt + 1, lastStatusCode: 503, lastResponse: "down for maintenance" });
      expect(Date.parse(first.nextAttemptAt)).toBe(clock.now.getTime() + waitMs);
      // Not due yet: nothing is tried before the wait is over.
      expect(await worker.runOnce()).toBe(0);
      clock.now = new Date(clock.now.getTime() + waitMs);
    }

    receiver.respond = (res) => res.writeHead(200).end("ok");
    for (let i = 0; i < 3; i++) await worker.runOnce();
    const received = await receiver.waitFor(3);
    expect(received.map((r) => r.event.data.status)).toEqual(["SENT", "DELIVERED", "READ"]);
    expect((await deliveries("pending").expect(200)).body.items).toEqual([]);
  });

  it("when every attempt fails, then after the 8th the delivery is failed, and a retry sends it again", async () => {
    await registerReceiver(t.db, owner.team, receiver);
    const clock = { now: new Date() };
    const worker = aWorker(t.db, { clock });
    const uuid = await sendAs(t.app, owner.auth);
    await postWebhook(t.app, { uuid, status: "FAILED", error: "blocked" }).expect(200);
    clock.now = new Date(Date.now() + 1_000);
    receiver.respond = (res) => res.writeHead(500).end();
    for (let attempt = 1; attempt <= 8; attempt++) {
      expect(await worker.runOnce()).toBe(1);
      clock.now = new Date(clock.now.getTime() + 11 * 3_600_000);
    }
    const [failed] = (await deliveries("failed").expect(200)).body.items;
    expect(failed).toMatchObject({ subject: uuid, attempts: 8, status: "failed", lastStatusCode: 500 });
    expect(await worker.runOnce()).toBe(0);

    receiver.respond = (res) => res.writeHead(204).end();
    await request(t.app).post(`/v1/callbacks/deliveries/${failed.id}/retry`).set(owner.auth).expect(202);
    await aWorker(t.db).runOnce();
    const [delivered] = await receiver.waitFor(1);
    expect(delivered?.headers["webhook-id"]).toBe(failed.eventId);
  });

  it("when the receiver answers 410 Gone, then the endpoint is disabled", async () => {
    const endpoint = await registerReceiver(t.db, owner.team, receiver);
    receiver.respond = (res) => res.writeHead(410).end();
    const uuid = await sendAs(t.app, owner.auth);
    await postWebhook(t.app, { uuid, status: "SENT" }).expect(200);
    await aWorker(t.db).runOnce();
    const { rows } = await t.db.pool.query("SELECT enabled, disabled_reason FROM callback_endpoints WHERE id = $1", [
      endpoint.id,
    ]);
    expect(rows[0]).toEqual({ enabled: false, disabled_reason: "the receiver answered 410 Gone" });
    await postWebhook(t.app, { uuid, status: "DELIVERED" }).expect(200);
    expect((await deliveries().expect(200)).body.items.map((d: { sequence: number }) => d.sequence)).toEqual([2]);
  });

  it("when an endpoint has failed everything for 5 days, then the next failure disables it", async () => {
    const endpoint = await registerReceiver(t.db, owner.team, receiver);
    receiver.respond = (res) => res.writeHead(502).end();
    const clock = { now: new Date() };
    await t.db.pool.query("UPDATE callback_endpoints SET failing_since = $2 WHERE id = $1", [
      endpoint.id,
      new Date(clock.now.getTime() - 5 * 86_400_000 + 60_000),
    ]);
    const uuid = await sendAs(t.app, owner.auth);
    await postWebhook(t.app, { uuid, status: "SENT" }).expect(200);
    await aWorker(t.db, { clock }).runOnce();
    const enabled = async () =>
      (await t.db.pool.query("SELECT enabled FROM callback_endpoints WHERE id = $1", [endpoint.id])).rows[0]?.enabled;
    expect(await enabled()).toBe(true);

    clock.now = new Date(clock.now.getTime() + 5_000 + 60_000);
    await aWorker(t.db, { clock }).runOnce();
    expect(await enabled()).toBe(false);
  });

  it("when a status change is rolled back, then no callback is left queued for it", async () => {
    await registerReceiver(t.db, owner.team, receiver);
    const uuid = await sendAs(t.app, owner.auth);
    const client = await t.db.pool.connect();
    try {
      await client.query("BEGIN");
      await client.query("UPDATE messages SET status = 'SENT' WHERE uuid = $1", [uuid]);
      const queued = await client.query("SELECT count(*)::int AS n FROM callback_deliveries WHERE subject = $1", [
        uuid,
      ]);
      expect(queued.rows[0].n).toBe(1);
      await client.query("ROLLBACK");
    } finally {
      client.release();
    }
    expect((await deliveries().expect(200)).body.items).toEqual([]);
  });

  it("when the receiver redirects, then the redirect is not followed and the attempt failed", async () => {
    const target = await startCallbackReceiver();
    await registerReceiver(t.db, owner.team, receiver);
    receiver.respond = (res) => res.writeHead(307, { location: target.url }).end();
    const uuid = await sendAs(t.app, owner.auth);
    await postWebhook(t.app, { uuid, status: "SENT" }).expect(200);
    await aWorker(t.db).runOnce();
    expect(target.requests).toBe(0);
    const [delivery] = (await deliveries("pending").expect(200)).body.items;
    expect(delivery).toMatchObject({ attempts: 1, lastStatusCode: 307, lastError: "HTTP 307" });
    await target.close();
  });

  it("when the receiver is too slow, then the attempt times out and is retried", async () => {
    await registerReceiver(t.db, owner.team, receiver);
    receiver.respond = (res) => setTimeout(() => res.writeHead(200).end(), 2_000);
    const uuid = await sendAs(t.app, owner.auth);
    await postWebhook(t.app, { uuid, status: "SENT" }).expect(200);
    await aWorker(t.db, { timeoutMs: 300 }).runOnce();
    const [delivery] = (await deliveries("pending").expect(200)).body.items;
    expect(delivery).toMatchObject({ attempts: 1, lastError: "timeout", lastStatusCode: null });
  });

  it("when the receiver answers a huge body, then at most 1 KiB of it is kept", async () => {
    await registerReceiver(t.db, owner.team, receiver);
    receiver.respond = (res) => res.writeHead(500).end("x".repeat(100_000));
    const uuid = await sendAs(t.app, owner.auth);
    await postWebhook(t.app, { uuid, status: "SENT" }).expect(200);
    await aWorker(t.db).runOnce();
    const [delivery] = (await deliveries("pending").expect(200)).body.items;
    expect(delivery.lastResponse).toBe("x".repeat(1024));
  });

  it("when private targets are not allowed, then a loopback name and a loopback address are refused", async () => {
    await registerReceiver(t.db, owner.team, receiver);
    await t.db.pool.query(
      "UPDATE callback_endpoints SET url = replace(url, '127.0.0.1', 'localhost') WHERE team = $1",
      [owner.team],
    );
    const uuid = await sendAs(t.app, owner.auth);
    await postWebhook(t.app, { uuid, status: "SENT" }).expect(200);
    await aWorker(t.db, { allowPrivate: false }).runOnce();
    expect(receiver.requests).toBe(0);
    const [delivery] = (await deliveries("pending").expect(200)).body.items;
    expect(delivery.lastError).toMatch(/^refused: must be an https URL/);

    await t.db.pool.query("UPDATE callback_endpoints SET url = replace(url, 'http:', 'https:') WHERE team = $1", [
      owner.team,
    ]);
    await request(t.app).post(`/v1/callbacks/deliveries/${delivery.id}/retry`).set(owner.auth).expect(202);
    await aWorker(t.db, { allowPrivate: false }).runOnce();
    expect(receiver.requests).toBe(0);
    const [again] = (await deliveries("pending").expect(200)).body.items;
    expect(again.lastError).toMatch(/^refused: localhost resolves to (127\.0\.0\.1|::1), which is not public/);
  });

  it("when two instances deliver at once, then each event reaches the receiver once", async () => {
    await registerReceiver(t.db, owner.team, receiver);
    const uuids = await Promise.all(Array.from({ length: 40 }, () => sendAs(t.app, owner.auth)));
    await postWebhook(
      t.app,
      uuids.flatMap((uuid) => [
        { uuid, status: "SENT" },
        { uuid, status: "DELIVERED" },
      ]),
    ).expect(200);
    const [a, b] = [aWorker(t.db), aWorker(t.db)];
    for (let round = 0; round < 4; round++) await Promise.all([a.runOnce(), b.runOnce()]);
    const received = await receiver.waitFor(80);
    const ids = received.map((r) => r.headers["webhook-id"]);
    expect(new Set(ids).size).toBe(80);
    expect(receiver.requests).toBe(80);
    for (const uuid of uuids) {
      const sequences = received.filter((r) => r.event.data.uuid === uuid).map((r) => r.event.data.sequence);
      expect(sequences).toEqual([2, 3]);
    }
  });
});

describe("GET /v1/callbacks/deliveries", () => {
  it("when another team asks, then it sees none of this team's deliveries and cannot retry them", async () => {
    await registerReceiver(t.db, owner.team, receiver);
    const uuid = await sendAs(t.app, owner.auth);
    await postWebhook(t.app, { uuid, status: "SENT" }).expect(200);
    const [mine] = (await deliveries().expect(200)).body.items;
    expect(mine).toMatchObject({ subject: uuid, status: "pending", attempts: 0 });
    expect((await deliveries(undefined, other.auth).expect(200)).body.items).toEqual([]);
    const res = await request(t.app).post(`/v1/callbacks/deliveries/${mine.id}/retry`).set(other.auth);
    expect(res.status).toBe(404);
    expect(res.body.code).toBe("delivery_not_found");
  });

  it.each([
    [{ status: "lost" }, "query.status"],
    [{ limit: "0" }, "query.limit"],
    [{ cursor: "abc" }, "query.cursor"],
    [{ extra: "1" }, "query.extra"],
  ])("when the query is %o, then 400 names %s", async (query, path) => {
    const res = await request(t.app).get("/v1/callbacks/deliveries").query(query).set(owner.auth);
    expect(res.status).toBe(400);
    expect(res.type).toBe("application/problem+json");
    expect(res.body.errors.map((e: { path: string }) => e.path)).toContain(path);
  });

  it("when the key is missing, then 401", async () => {
    await request(t.app).get("/v1/callbacks/deliveries").expect(401);
  });
});
