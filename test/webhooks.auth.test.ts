import { randomBytes } from "node:crypto";
import { Webhook } from "standardwebhooks";
import request from "supertest";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestApp, type TestApp } from "./support/test-app.ts";
import { aSentMessage, postWebhook, readMessage, WEBHOOK } from "./support/webhook.ts";

const SECRET = "webhook-shared-secret";
const SIGNING_SECRET = `whsec_${randomBytes(24).toString("base64")}`;

async function eventCount(t: TestApp, uuid: string): Promise<number> {
  const { rows } = await t.db.pool.query("SELECT count(*)::int AS n FROM message_events WHERE uuid = $1", [uuid]);
  return rows[0].n;
}

/** Asserts that the message is still only PENDING with its one PENDING event: nothing was stored. */
async function expectNothingStored(t: TestApp, uuid: string) {
  expect((await readMessage(t.app, uuid)).status).toBe("PENDING");
  expect(await eventCount(t, uuid)).toBe(1);
}

describe("POST /webhooks/betatel with WEBHOOK_SECRET", () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ WEBHOOK_SECRET: SECRET });
  });
  afterAll(() => t.close());

  it.each([
    ["the x-webhook-secret header", { "x-webhook-secret": SECRET }, ""],
    ["a bearer token", { authorization: `Bearer ${SECRET}` }, ""],
    ["the token query parameter", {}, `?token=${encodeURIComponent(SECRET)}`],
  ])("when the secret comes as %s, then the status is applied", async (_way, headers, query) => {
    const uuid = await aSentMessage(t.app);
    const res = await request(t.app)
      .post(`${WEBHOOK}${query}`)
      .set({ "content-type": "application/json", ...headers })
      .send(JSON.stringify({ uuid, status: "SENT" }));
    expect(res.status).toBe(200);
    expect(res.body.results[0].outcome).toBe("applied");
    expect((await readMessage(t.app, uuid)).status).toBe("SENT");
  });

  it.each([
    ["no secret", {}, ""],
    ["a wrong header", { "x-webhook-secret": `${SECRET}x` }, ""],
    ["a wrong bearer token", { authorization: "Bearer nope" }, ""],
    ["a wrong token parameter", {}, "?token=nope"],
    ["the secret as a prefix only", { "x-webhook-secret": SECRET.slice(0, -1) }, ""],
  ])("when the request carries %s, then it answers 401 and stores nothing", async (_case, headers, query) => {
    const uuid = await aSentMessage(t.app);
    const res = await request(t.app)
      .post(`${WEBHOOK}${query}`)
      .set({ "content-type": "application/json", ...headers })
      .send(JSON.stringify({ uuid, status: "SENT" }));
    expect(res.status).toBe(401);
    expect(res.headers["content-type"]).toMatch(/application\/problem\+json/);
    expect(res.body.code).toBe("unauthorized");
    await expectNothingStored(t, uuid);
  });
});

describe("POST /webhooks/betatel with WEBHOOK_SIGNING_SECRET", () => {
  let t: TestApp;
  const signer = new Webhook(SIGNING_SECRET);
  beforeAll(async () => {
    t = await startTestApp({ WEBHOOK_SECRET: SECRET, WEBHOOK_SIGNING_SECRET: SIGNING_SECRET });
  });
  afterAll(() => t.close());

  function signed(body: string, at = new Date(), id = `msg_${randomBytes(8).toString("hex")}`) {
    return {
      "x-webhook-secret": SECRET,
      "webhook-id": id,
      "webhook-timestamp": String(Math.floor(at.getTime() / 1000)),
      "webhook-signature": signer.sign(id, at, body),
    };
  }

  it("when the signature is valid, then the status is applied", async () => {
    const uuid = await aSentMessage(t.app);
    const body = JSON.stringify([{ uuid, status: "DELIVERED" }]);
    const res = await postWebhook(t.app, body, signed(body));
    expect(res.status).toBe(200);
    expect((await readMessage(t.app, uuid)).status).toBe("DELIVERED");
  });

  it("when several signatures are sent (key rotation) and one is valid, then the status is applied", async () => {
    const uuid = await aSentMessage(t.app);
    const body = JSON.stringify({ uuid, status: "SENT" });
    const headers = signed(body);
    const other = new Webhook(`whsec_${randomBytes(24).toString("base64")}`);
    const stale = other.sign(headers["webhook-id"], new Date(Number(headers["webhook-timestamp"]) * 1000), body);
    const res = await postWebhook(t.app, body, {
      ...headers,
      "webhook-signature": `${stale} ${headers["webhook-signature"]}`,
    });
    expect(res.status).toBe(200);
    expect((await readMessage(t.app, uuid)).status).toBe("SENT");
  });

  it("when the body was changed after signing, then it answers 401 and stores nothing", async () => {
    const uuid = await aSentMessage(t.app);
    const body = JSON.stringify({ uuid, status: "SENT" });
    const res = await postWebhook(t.app, body.replace("SENT", "READ"), signed(body));
    expect(res.status).toBe(401);
    await expectNothingStored(t, uuid);
  });

  it.each([
    ["older than 5 minutes", -6 * 60_000],
    ["more than 5 minutes ahead", 6 * 60_000],
  ])("when the signed timestamp is %s, then it answers 401 and stores nothing", async (_case, offset) => {
    const uuid = await aSentMessage(t.app);
    const body = JSON.stringify({ uuid, status: "SENT" });
    const res = await postWebhook(t.app, body, signed(body, new Date(Date.now() + offset)));
    expect(res.status).toBe(401);
    await expectNothingStored(t, uuid);
  });

  it("when the signature headers are missing, then it answers 401 even with the right shared secret", async () => {
    const uuid = await aSentMessage(t.app);
    const res = await postWebhook(t.app, { uuid, status: "SENT" }, { "x-webhook-secret": SECRET });
    expect(res.status).toBe(401);
    await expectNothingStored(t, uuid);
  });

  it("when the signature is valid but the shared secret is wrong, then it answers 401", async () => {
    const uuid = await aSentMessage(t.app);
    const body = JSON.stringify({ uuid, status: "SENT" });
    const res = await postWebhook(t.app, body, { ...signed(body), "x-webhook-secret": "wrong" });
    expect(res.status).toBe(401);
    await expectNothingStored(t, uuid);
  });

  it("when a validly signed body is not JSON, then it answers 400 (not 401)", async () => {
    const body = "{not json";
    const res = await postWebhook(t.app, body, signed(body));
    expect(res.status).toBe(400);
    expect(res.body.code).toBe("malformed_json");
  });
});
