import { randomBytes } from "node:crypto";
import type { Express } from "express";
import { Webhook } from "standardwebhooks";
import request from "supertest";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { maskPhone } from "../src/phone/phone.ts";
import { type FakeBetatel, startFakeBetatel } from "./support/fake-betatel.ts";
import { spawnServer } from "./support/spawn-server.ts";
import { aPhoneNumber, aUuid, startTestApp, TEST_BETATEL, type TestApp } from "./support/test-app.ts";

// Distinctive values, so a leak anywhere in the output is found by a plain search.
const API_KEY = `apikey-${randomBytes(12).toString("hex")}`;
const WRONG_KEY = `wrongkey-${randomBytes(12).toString("hex")}`;
const WEBHOOK_SECRET = `whsecret-${randomBytes(12).toString("hex")}`;
const WATCH_SECRET = `watchsecret-${randomBytes(16).toString("hex")}`;
const SIGNING_KEY = randomBytes(24).toString("base64");
const SIGNING_SECRET = `whsec_${SIGNING_KEY}`;
const OTP_CODE = String(100_000 + Math.floor(Math.random() * 899_999));
const OTP_TEXT = `Your verification code is ${OTP_CODE}`;

const env = {
  API_KEYS: `${API_KEY},other-${randomBytes(6).toString("hex")}`,
  WEBHOOK_SECRET,
  WATCH_SECRET,
  WEBHOOK_SIGNING_SECRET: SIGNING_SECRET,
  LOG_LEVEL: "trace",
  RATE_LIMIT_PER_MINUTE: "0",
};

const SECRETS = { API_KEY, WRONG_KEY, WEBHOOK_SECRET, WATCH_SECRET, SIGNING_KEY, OTP_TEXT, OTP_CODE, ...TEST_BETATEL };
const LEAK =
  /\bat [\w.<>]+ \(|node_modules|\.ts:\d+|\b(SELECT|INSERT|UPDATE|DELETE) .*\b(FROM|INTO|SET)\b|prisma|sqlstate/i;

/**
 * The whole life of an OTP plus the usual failures, as a product app and Betatel would drive it.
 * Returns the phone numbers used and every answer's body text.
 */
async function fullFlow(target: Express | string, betatel: FakeBetatel) {
  const phone = aPhoneNumber();
  const otherPhone = aPhoneNumber();
  const bodies: string[] = [];
  const keep = (res: request.Response) => {
    bodies.push(res.text);
    return res;
  };

  const sent = keep(
    await request(target)
      .post("/v1/messages")
      .set("authorization", `Bearer ${API_KEY}`)
      .set("idempotency-key", `logs-${aUuid()}`)
      .send({ to: `+${phone}`, text: OTP_TEXT }),
  );
  expect(sent.status).toBe(201);
  const uuid: string = sent.body.uuid;

  const payload = JSON.stringify([
    { uuid, status: "sent", to: phone, wam_id: "wamid.abc", text: OTP_TEXT },
    { uuid, status: "DELIVERED", to: phone, timestamp: Math.floor(Date.now() / 1000) },
    { uuid, status: "READ", to: phone },
  ]);
  const id = `msg_${aUuid()}`;
  const signature = new Webhook(SIGNING_SECRET).sign(id, new Date(), payload);
  const webhook = keep(
    await request(target)
      .post(`/webhooks/betatel?token=${encodeURIComponent(WEBHOOK_SECRET)}`)
      .set({
        "content-type": "application/json",
        "webhook-id": id,
        "webhook-timestamp": String(Math.floor(Date.now() / 1000)),
        "webhook-signature": signature,
      })
      .send(payload),
  );
  expect(webhook.status).toBe(200);
  expect(webhook.body.results.map((result: { outcome: string }) => result.outcome)).toEqual([
    "applied",
    "applied",
    "applied",
  ]);

  const read = keep(await request(target).get(`/v1/messages/${uuid}`).set("x-api-key", API_KEY));
  expect(read.body.status).toBe("READ");
  // A browser's read with the watch token of watchUrl: the token is a credential too, never logged.
  const watchToken = new URL(read.body.watchUrl, "http://x").searchParams.get("watch") ?? "";
  expect(watchToken).not.toBe("");
  expect(keep(await request(target).get(`/v1/messages/${uuid}?waitFor=READ&watch=${watchToken}`)).status).toBe(200);

  // The usual failures: wrong key, wrong webhook token, bad phone, Betatel refusing (and echoing the number and text).
  expect(keep(await request(target).get(`/v1/messages/${uuid}`).set("x-api-key", WRONG_KEY)).status).toBe(401);
  expect(
    keep(await request(target).post(`/webhooks/betatel?token=${WRONG_KEY}`).send({ uuid, status: "SENT" })).status,
  ).toBe(401);
  expect(
    keep(
      await request(target)
        .post("/v1/messages")
        .set("x-api-key", API_KEY)
        .send({ to: `${otherPhone}x`, text: OTP_TEXT }),
    ).status,
  ).toBe(400);
  betatel.reply({ status: 400, body: { message: `Cannot send "${OTP_TEXT}" to ${otherPhone}` } });
  expect(
    keep(await request(target).post("/v1/messages").set("x-api-key", API_KEY).send({ to: otherPhone, text: OTP_TEXT }))
      .status,
  ).toBe(422);
  betatel.reply({ status: 500, body: { message: "boom", error: `internal ${OTP_TEXT}` } });
  expect(
    keep(await request(target).post("/v1/messages").set("x-api-key", API_KEY).send({ to: otherPhone, text: OTP_TEXT }))
      .status,
  ).toBe(502);
  return { phones: [phone, otherPhone], bodies, watchToken };
}

function expectNoLeaks(output: string, phones: string[], watchToken: string) {
  for (const [name, secret] of Object.entries({ ...SECRETS, watchToken })) {
    expect(output.includes(secret), `${name} appears in the logs`).toBe(false);
  }
  for (const phone of phones) {
    expect(output.includes(phone), `phone ${phone} appears unmasked`).toBe(false);
    expect(output.includes(phone.slice(-9)), `the national part of ${phone} appears`).toBe(false);
  }
  // Logging did happen, with the masked number.
  expect(output).toContain(maskPhone(phones[0] as string));
}

describe("logs of a full send + webhook flow", () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp(env);
  });
  afterAll(() => t.close());

  it("when run in-process at LOG_LEVEL=trace, then no secret, OTP text or unmasked phone is logged, and no body leaks internals", async () => {
    const { phones, bodies, watchToken } = await fullFlow(t.app, t.betatel);
    expect(t.logs.lines.length).toBeGreaterThan(5);
    expectNoLeaks(t.logs.text, phones, watchToken);
    // Each request line names the path the client asked for, the webhook's included.
    const urls = t.logs.lines.map((line) => JSON.parse(line).req?.url).filter(Boolean);
    expect(urls).toContain("/webhooks/betatel");
    expect(urls).not.toContain("/betatel");
    expect(urls).toContain("/v1/messages");
    for (const body of bodies) {
      expect(body).not.toMatch(LEAK);
      expect(body).not.toContain(OTP_TEXT);
      expect(body).not.toContain(WEBHOOK_SECRET);
      expect(body).not.toContain(WATCH_SECRET);
      expect(body).not.toContain(API_KEY);
    }
    // And nothing secret was written to the database: the OTP text is not stored, only its length.
    const { rows } = await t.db.pool.query(
      "SELECT m::text AS row FROM messages m WHERE m.to = $1 UNION ALL SELECT e::text FROM message_events e JOIN messages m USING (uuid) WHERE m.to = $1",
      [phones[0]],
    );
    expect(rows.length).toBeGreaterThan(1);
    for (const { row } of rows as Array<{ row: string }>) {
      for (const secret of [API_KEY, WEBHOOK_SECRET, SIGNING_KEY, TEST_BETATEL.apiKey])
        expect(row).not.toContain(secret);
    }
  });
});

describe("logs of a spawned production process", () => {
  let fake: FakeBetatel;
  beforeAll(async () => {
    fake = await startFakeBetatel();
  });
  afterAll(() => fake.close());

  it("when the same flow runs against `node src/server.ts`, then its stdout holds no secret, OTP text or unmasked phone", async () => {
    const server = await spawnServer({
      ...env,
      NODE_ENV: "production",
      VERIFY_SECRET: "test-verify-secret-test-verify-secret-0123",
      DATABASE_URL: inject("databaseUrl"),
      BETATEL_BASE_URL: fake.url,
      BETATEL_API_KEY: TEST_BETATEL.apiKey,
      BETATEL_ACCOUNT_ID: TEST_BETATEL.accountId,
      RECONCILE_INTERVAL_MS: "0",
    });
    try {
      const { phones, watchToken } = await fullFlow(server.url, fake);
      server.kill("SIGTERM");
      expect(await server.exited).toBe(0);
      expectNoLeaks(server.output(), phones, watchToken);
    } finally {
      server.kill("SIGKILL");
    }
  });
});
