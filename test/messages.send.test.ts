import request from "supertest";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { anOtp, messagesTo, tablesContaining } from "./support/message-tables.ts";
import { aPhoneNumber, aUuid, startTestApp, TEST_BETATEL, type TestApp } from "./support/test-app.ts";

let t: TestApp;
beforeAll(async () => {
  t = await startTestApp({ LOG_LEVEL: "trace" });
});
afterAll(() => t.close());
beforeEach(() => t.betatel.reset());

describe("POST /v1/messages", () => {
  it("when Betatel accepts, then it answers 201 with the uuid and GET shows it PENDING", async () => {
    const to = aPhoneNumber();
    const res = await request(t.app)
      .post("/v1/messages")
      .send({ to: `+${to}`, text: "Your code is 482910" });

    expect(res.status).toBe(201);
    expect(res.body).toEqual({
      uuid: expect.any(String),
      to,
      status: "PENDING",
      createdAt: expect.any(String),
      watchUrl: expect.stringMatching(/^\/v1\/messages\/[\w-]+\/stream\?watch=[0-9a-z]+\.[\w-]{24}$/),
    });
    expect(res.body.watchUrl).toContain(`/v1/messages/${res.body.uuid}/stream?`);
    expect(res.headers.location).toBe(`/v1/messages/${res.body.uuid}`);

    const [call] = t.betatel.requests;
    expect(t.betatel.requests).toHaveLength(1);
    expect(call?.method).toBe("POST");
    expect(call?.url).toBe("/api/v1/connect-hub/whatsapp/otp");
    expect(call?.headers["x-api-key"]).toBe(TEST_BETATEL.apiKey);
    expect(call?.headers["x-account-id"]).toBe(TEST_BETATEL.accountId);
    expect(call?.headers["content-type"]).toBe("application/json");
    expect(call?.json).toEqual({ to, text: "Your code is 482910" });

    const read = await request(t.app).get(`/v1/messages/${res.body.uuid}`);
    expect(read.status).toBe(200);
    expect(read.body).toEqual({
      uuid: res.body.uuid,
      to,
      status: "PENDING",
      createdAt: res.body.createdAt,
      updatedAt: expect.any(String),
      sentAt: null,
      deliveredAt: null,
      readAt: null,
      failedAt: null,
      expiredAt: null,
      error: null,
      reference: null,
      metadata: null,
      verificationId: null,
      watchUrl: expect.stringContaining(`/v1/messages/${res.body.uuid}/stream?watch=`),
      events: [
        {
          status: "PENDING",
          outcome: "applied",
          occurredAt: expect.any(String),
          receivedAt: res.body.createdAt,
          source: "api",
        },
      ],
    });
    // PENDING happened when Betatel was asked, just before the row was written.
    expect(read.body.events[0].occurredAt <= res.body.createdAt).toBe(true);
  });

  it("when `to` has spaces, dashes and parentheses, then Betatel gets E.164 digits without +", async () => {
    const res = await request(t.app).post("/v1/messages").send({ to: "+387 (61) 444-555", text: "1234" });

    expect(res.status).toBe(201);
    expect(res.body.to).toBe("38761444555");
    expect(t.betatel.requests[0]?.json).toEqual({ to: "38761444555", text: "1234" });
  });

  it("when an OTP is sent, then the row keeps its length and no table holds the text", async () => {
    const to = aPhoneNumber();
    const otp = anOtp();
    const res = await request(t.app)
      .post("/v1/messages")
      .set("Idempotency-Key", `key-${aUuid()}`)
      .send({ to, text: otp.text });
    expect(res.status).toBe(201);

    const { rows } = await t.db.pool.query(`SELECT "to", status, text_length FROM messages WHERE uuid = $1`, [
      res.body.uuid,
    ]);
    expect(rows).toEqual([{ to, status: "PENDING", text_length: otp.text.length }]);
    expect(await messagesTo(t.db, to)).toBe(1);
    expect(await tablesContaining(t.db, res.body.uuid)).toEqual(["messages", "message_events", "idempotency_keys"]);
    expect(await tablesContaining(t.db, otp.code)).toEqual([]);
  });

  it("when an OTP is sent, then no log line holds its text, even at trace level", async () => {
    const to = aPhoneNumber();
    const otp = anOtp();
    const res = await request(t.app).post("/v1/messages").send({ to, text: otp.text });
    expect(res.status).toBe(201);

    expect(t.logs.text).toContain(res.body.uuid);
    expect(t.logs.text).not.toContain(otp.code);
    // Phone numbers are masked too.
    expect(t.logs.text).not.toContain(to);
  });
});

describe("POST /v1/messages and an early webhook", () => {
  it("when SENT arrives before the row is stored, then PENDING (the time we asked Betatel) is still the first event", async () => {
    const uuid = aUuid();
    const to = aPhoneNumber();
    t.betatel.reply({ status: 200, body: { uuid, to }, delayMs: 300 });

    const sending = request(t.app)
      .post("/v1/messages")
      .send({ to, text: "1234" })
      .then((res) => res);
    await until(() => t.betatel.requests.length === 1);
    // Betatel already sent it and says so while our insert has not happened yet.
    const early = await request(t.app)
      .post("/webhooks/betatel")
      .send({ uuid, status: "sent", timestamp: new Date().toISOString() });
    const sent = await sending;

    expect(early.status).toBe(200);
    expect(sent.status).toBe(201);
    const read = await request(t.app).get(`/v1/messages/${uuid}`);
    expect(read.body.status).toBe("SENT");
    expect(read.body.events.map((event: { status: string }) => event.status)).toEqual(["PENDING", "SENT"]);
    expect(read.body.events[0].occurredAt <= read.body.events[1].occurredAt).toBe(true);
  });
});

async function until(done: () => boolean) {
  const deadline = Date.now() + 5000;
  while (!done() && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5));
}

describe("GET /v1/messages/:uuid", () => {
  it("when the uuid is unknown, then it answers 404 message_not_found as problem+json", async () => {
    const res = await request(t.app).get(`/v1/messages/${aUuid()}`);

    expect(res.status).toBe(404);
    expect(res.headers["content-type"]).toMatch(/^application\/problem\+json/);
    expect(res.body).toMatchObject({ status: 404, code: "message_not_found" });
  });

  it("when the uuid has characters no uuid has, then it answers 400 validation_failed", async () => {
    const res = await request(t.app).get("/v1/messages/not%20a%20uuid");

    expect(res.status).toBe(400);
    expect(res.body).toMatchObject({ code: "validation_failed", errors: [{ path: "uuid" }] });
  });
});

describe("GET /messages/:uuid (the path the service's users named)", () => {
  it("when the message exists, then it answers the same body as /v1/messages/:uuid", async () => {
    const sent = await request(t.app).post("/v1/messages").send({ to: aPhoneNumber(), text: "5555" });

    const v1 = await request(t.app).get(`/v1/messages/${sent.body.uuid}`);
    const plain = await request(t.app).get(`/messages/${sent.body.uuid}`);

    expect(plain.status).toBe(200);
    expect({ ...plain.body, watchUrl: "" }).toEqual({ ...v1.body, watchUrl: "" });
  });

  it("when the uuid is unknown, then it answers 404 message_not_found", async () => {
    const res = await request(t.app).get(`/messages/${aUuid()}`);

    expect(res.status).toBe(404);
    expect(res.body.code).toBe("message_not_found");
  });
});

describe("API keys on /v1/messages and /messages", () => {
  it("when API_KEYS is set, then a request without a key gets 401 and Betatel is not called", async () => {
    const keyed = await startTestApp({ API_KEYS: "key-one,key-two" });
    try {
      const denied = await request(keyed.app).post("/v1/messages").send({ to: aPhoneNumber(), text: "1" });
      expect(denied.status).toBe(401);
      expect(denied.body.code).toBe("unauthorized");

      const sent = await request(keyed.app)
        .post("/v1/messages")
        .set("Authorization", "Bearer key-two")
        .send({ to: aPhoneNumber(), text: "1" });
      expect(sent.status).toBe(201);
      expect(keyed.betatel.requests).toHaveLength(1);

      const plain = await request(keyed.app).get(`/messages/${sent.body.uuid}`);
      expect(plain.status).toBe(401);
      const read = await request(keyed.app).get(`/messages/${sent.body.uuid}`).set("x-api-key", "key-one");
      expect(read.status).toBe(200);
    } finally {
      await keyed.close();
    }
  });
});
