import request from "supertest";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { requestFingerprint } from "../src/messages/idempotency.ts";
import { messagesTo } from "./support/message-tables.ts";
import { aPhoneNumber, aUuid, startTestApp, type TestApp } from "./support/test-app.ts";

const TIMEOUT_MS = 1000;

let t: TestApp;
beforeAll(async () => {
  t = await startTestApp({ BETATEL_TIMEOUT_MS: String(TIMEOUT_MS) });
});
afterAll(() => t.close());
beforeEach(() => t.betatel.reset());

const aKey = () => `order-${aUuid()}`;
/** A replay is the first answer again, but with a fresh watch token in `watchUrl`. */
const replayed = ({ watchUrl, ...answer }: { watchUrl?: string }) => ({ ...answer, watchUrl: watchUrl && "(fresh)" });
const send = (key: string, body: object) => request(t.app).post("/v1/messages").set("Idempotency-Key", key).send(body);

describe("POST /v1/messages with Idempotency-Key", () => {
  it("when the same request is repeated, then it replays the first 201 and Betatel is called once", async () => {
    const key = aKey();
    const body = { to: aPhoneNumber(), text: "Your code is 111111" };

    const first = await send(key, body);
    const second = await send(key, body);

    expect(first.status).toBe(201);
    expect(second.status).toBe(201);
    expect(replayed(second.body)).toEqual(replayed(first.body));
    expect(second.headers.location).toBe(first.headers.location);
    expect(t.betatel.requests).toHaveLength(1);
    expect(await messagesTo(t.db, body.to)).toBe(1);
  });

  it("when the same number is written differently, then it is the same request (the normalised body counts)", async () => {
    const key = aKey();
    const to = aPhoneNumber();

    const first = await send(key, { to, text: "222222" });
    const second = await send(key, { to: `+${to.slice(0, 3)} ${to.slice(3)}`, text: "222222" });

    expect(second.status).toBe(201);
    expect(replayed(second.body)).toEqual(replayed(first.body));
    expect(t.betatel.requests).toHaveLength(1);
  });

  it("when five identical requests arrive at the same moment, then all get the same 201 and Betatel is called once", async () => {
    const key = aKey();
    const body = { to: aPhoneNumber(), text: "Your code is 333333" };
    t.betatel.reply({ status: 200, body: { uuid: aUuid(), to: body.to }, delayMs: 300 });

    const answers = await Promise.all(Array.from({ length: 5 }, () => send(key, body)));

    expect(answers.map((res) => res.status)).toEqual([201, 201, 201, 201, 201]);
    for (const res of answers) expect(replayed(res.body)).toEqual(replayed(answers[0]?.body));
    expect(t.betatel.requests).toHaveLength(1);
    expect(await messagesTo(t.db, body.to)).toBe(1);
  });

  it("when the key is reused with a different body, then 422 and Betatel is not called again", async () => {
    const key = aKey();
    const to = aPhoneNumber();
    await send(key, { to, text: "444444" });

    const reused = await send(key, { to, text: "444445" });

    expect(reused.status).toBe(422);
    expect(reused.headers["content-type"]).toMatch(/^application\/problem\+json/);
    expect(reused.body.code).toBe("idempotency_key_reused");
    expect(t.betatel.requests).toHaveLength(1);
  });

  it("when the same key comes with a different API key, then it is a different request", async () => {
    const keyed = await startTestApp({ API_KEYS: "team-a,team-b" });
    try {
      const key = aKey();
      const body = { to: aPhoneNumber(), text: "555555" };
      const a = await request(keyed.app)
        .post("/v1/messages")
        .set("x-api-key", "team-a")
        .set("Idempotency-Key", key)
        .send(body);
      const b = await request(keyed.app)
        .post("/v1/messages")
        .set("x-api-key", "team-b")
        .set("Idempotency-Key", key)
        .send(body);

      expect([a.status, b.status]).toEqual([201, 201]);
      expect(b.body.uuid).not.toBe(a.body.uuid);
      expect(keyed.betatel.requests).toHaveLength(2);
    } finally {
      await keyed.close();
    }
  });

  it.each([502, 503, 504])(
    "when Betatel answered %i (it may have sent the OTP), then a retry with the key replays the 502 and does not call Betatel",
    async (status) => {
      const key = aKey();
      const body = { to: aPhoneNumber(), text: "666666" };
      t.betatel.reply({ status, body: "Bad Gateway" });

      const failed = await send(key, body);
      const retried = await send(key, body);

      expect(failed.status).toBe(502);
      expect(failed.body.code).toBe("provider_unavailable");
      expect(retried.status).toBe(502);
      expect(retried.body).toEqual(failed.body);
      expect(t.betatel.requests).toHaveLength(1);
    },
  );

  it("when two identical requests arrive together and Betatel answers 502, then Betatel is called once and both get the same 502", async () => {
    const key = aKey();
    const body = { to: aPhoneNumber(), text: "Your code is 676767" };
    t.betatel.reply({ status: 502, body: "Bad Gateway", delayMs: 300 });

    const answers = await Promise.all([send(key, body), send(key, body)]);

    expect(answers.map((res) => res.status)).toEqual([502, 502]);
    expect(answers[1]?.body).toEqual(answers[0]?.body);
    expect(answers[0]?.body.code).toBe("provider_unavailable");
    expect(t.betatel.requests).toHaveLength(1);
    expect(await messagesTo(t.db, body.to)).toBe(0);
  });

  it("when Betatel rejected the first of two identical requests (nothing sent), then the waiting twin does not call Betatel; a later retry does", async () => {
    const key = aKey();
    const body = { to: aPhoneNumber(), text: "Your code is 686868" };
    t.betatel.reply({ status: 400, body: { message: "try later" }, delayMs: 300 });

    const [first, twin] = await Promise.all([
      send(key, body),
      new Promise((resolve) => setTimeout(resolve, 50)).then(() => send(key, body)),
    ]);

    expect(first.status).toBe(422);
    expect(twin.status).toBe(409);
    expect(twin.body.code).toBe("idempotency_key_in_progress");
    expect(twin.headers["retry-after"]).toBeDefined();
    expect(t.betatel.requests).toHaveLength(1);

    const retried = await send(key, body);
    expect(retried.status).toBe(201);
    expect(t.betatel.requests).toHaveLength(2);
  });

  it("when Betatel timed out, then a retry with the key replays the 504 and does not call Betatel (the OTP may be out)", async () => {
    const key = aKey();
    const body = { to: aPhoneNumber(), text: "777777" };
    t.betatel.reply({ hang: true });

    const timedOut = await send(key, body);
    const retried = await send(key, body);

    expect(timedOut.status).toBe(504);
    expect(retried.status).toBe(504);
    expect(retried.headers["content-type"]).toMatch(/^application\/problem\+json/);
    expect(retried.body).toEqual(timedOut.body);
    expect(retried.body.code).toBe("provider_timeout");
    expect(t.betatel.requests).toHaveLength(1);
  });

  it.each([
    { name: "a 2xx without a uuid", reply: { status: 200, body: { accepted: true } }, status: 502 },
    { name: "a connection reset after the request", reply: { reset: true as const }, status: 502 },
  ])(
    "when Betatel answered $name (it may have sent the OTP), then a retry with the key replays the answer and does not call Betatel",
    async ({ reply, status }) => {
      const key = aKey();
      const body = { to: aPhoneNumber(), text: "121212" };
      t.betatel.reply(reply);

      const first = await send(key, body);
      const retried = await send(key, body);

      expect(first.status).toBe(status);
      expect(first.body.code).toBe("provider_unavailable");
      expect(retried.status).toBe(status);
      expect(retried.body).toEqual(first.body);
      expect(t.betatel.requests).toHaveLength(1);
    },
  );

  it("when the fields come in another order, then it is the same request", async () => {
    const key = aKey();
    const to = aPhoneNumber();

    const first = await send(key, { to, text: "131313" });
    const second = await send(key, { text: "131313", to });

    expect(replayed(second.body)).toEqual(replayed(first.body));
    expect(t.betatel.requests).toHaveLength(1);
  });

  it("when the metadata keys come in another order, then it is the same request", async () => {
    const key = aKey();
    const to = aPhoneNumber();

    const first = await send(key, { to, text: "141414", metadata: { flow: "signup", attempt: 1 } });
    const second = await send(key, { to, text: "141414", metadata: { attempt: 1, flow: "signup" } });

    expect(second.status).toBe(201);
    expect(replayed(second.body)).toEqual(replayed(first.body));
    expect(t.betatel.requests).toHaveLength(1);
  });

  it("when the first request never finished (it died holding the key), then 409 with Retry-After and Betatel is not called", async () => {
    const key = aKey();
    const body = { to: aPhoneNumber(), text: "141414" };
    // What a first request that crashed a minute ago leaves behind: the claim, without an answer.
    await t.db.pool.query(
      `INSERT INTO idempotency_keys (scope, key, request_hash, created_at)
       VALUES ('default:open', $1, $2, now() - interval '1 minute')`,
      [key, requestFingerprint(body, "")],
    );

    const res = await send(key, body);

    expect(res.status).toBe(409);
    expect(res.body.code).toBe("idempotency_key_in_progress");
    expect(res.headers["retry-after"]).toBeDefined();
    expect(t.betatel.requests).toHaveLength(0);
  }, 15_000);

  it("when the key is longer than 255 characters, then 400 naming the header and Betatel is not called", async () => {
    const res = await send("k".repeat(256), { to: aPhoneNumber(), text: "888888" });

    expect(res.status).toBe(400);
    expect(res.body).toMatchObject({ code: "validation_failed", errors: [{ path: "headers.idempotency-key" }] });
    expect(t.betatel.requests).toHaveLength(0);
  });

  it("when the key is stored, then the table holds a keyed fingerprint, not the request", async () => {
    const key = aKey();
    const body = { to: aPhoneNumber(), text: "Your code is 999999" };
    await send(key, body);

    const { rows } = await t.db.pool.query(
      `SELECT request_hash, response_status FROM idempotency_keys WHERE key = $1`,
      [key],
    );
    expect(rows).toEqual([{ request_hash: expect.stringMatching(/^[0-9a-f]{64}$/), response_status: 201 }]);
  });
});
