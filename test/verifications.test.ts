import request from "supertest";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { aTeam } from "./support/callbacks.ts";
import { aPhoneNumber, startTestApp, type TestApp } from "./support/test-app.ts";
import { checkCode, codesSentTo, lastCodeSentTo, startVerification, wrongCode } from "./support/verifications.ts";

const owner = aTeam();
const other = aTeam();
let t: TestApp;

beforeAll(async () => {
  t = await startTestApp({ API_KEYS: `${owner.apiKeys},${other.apiKeys}` });
});
afterAll(() => t.close());
beforeEach(() => t.betatel.reset());

/** Starts a verification for a fresh number and returns it with the code that was sent. */
async function aVerification() {
  const to = aPhoneNumber();
  const res = await startVerification(t.app, owner.auth, to).expect(201);
  return { id: res.body.id as string, to, code: lastCodeSentTo(t.betatel, to), body: res.body };
}

const moveClock = (sql: string, id: string) => t.db.pool.query(`UPDATE verifications SET ${sql} WHERE id = $1`, [id]);

describe("POST /v1/verifications", () => {
  it("when started, then a random code is sent through Betatel and tracked as a message, and never stored or logged", async () => {
    const to = aPhoneNumber();
    const res = await startVerification(t.app, owner.auth, `+${to}`).expect(201);
    expect(res.headers.location).toBe(`/v1/verifications/${res.body.id}`);
    expect(res.body).toMatchObject({ to, status: "pending", checksLeft: 5, sendsLeft: 4 });
    expect(Date.parse(res.body.expiresAt) - Date.now()).toBeGreaterThan(590_000);
    const code = lastCodeSentTo(t.betatel, to);
    expect(code).toMatch(/^\d{6}$/);
    expect(t.betatel.requests.at(-1)?.json).toHaveProperty(
      "text",
      `Your verification code is ${code}. It expires in 10 minutes.`,
    );
    const [message] = res.body.messages;
    expect(message).toMatchObject({ status: "PENDING" });
    const read = await request(t.app).get(`/v1/messages/${message.uuid}`).set(owner.auth).expect(200);
    expect(read.body.verificationId).toBe(res.body.id);

    expect(JSON.stringify(res.body)).not.toContain(code);
    const rows = await t.db.pool.query("SELECT to_jsonb(v)::text AS row FROM verifications v WHERE id = $1", [
      res.body.id,
    ]);
    expect(rows.rows[0].row).not.toContain(code);
    expect(t.logs.text).not.toContain(code);
  });

  it("when the content type is application/merge-patch+json, then the body is read as JSON", async () => {
    const res = await request(t.app)
      .post("/v1/verifications")
      .set(owner.auth)
      .set("Content-Type", "application/merge-patch+json")
      .send(JSON.stringify({ to: aPhoneNumber() }));
    expect(res.status).toBe(201);
  });

  it("when two verifications start, then their codes differ", async () => {
    const codes = new Set();
    for (let i = 0; i < 5; i++) codes.add((await aVerification()).code);
    expect(codes.size).toBeGreaterThan(1);
  });

  it("when asked again within 30 s, then 429 resend_too_soon with Retry-After, and later the same code is sent again", async () => {
    const { id, to, code } = await aVerification();
    const tooSoon = await startVerification(t.app, owner.auth, to).expect(429);
    expect(tooSoon.body).toMatchObject({ code: "resend_too_soon", id });
    expect(Number(tooSoon.headers["retry-after"])).toBeGreaterThanOrEqual(29);
    expect(Number(tooSoon.headers["retry-after"])).toBeLessThanOrEqual(30);

    await moveClock("last_sent_at = last_sent_at - interval '31 seconds'", id);
    const resent = await startVerification(t.app, owner.auth, to).expect(200);
    expect(resent.body).toMatchObject({ id, sendsLeft: 3 });
    expect(resent.body.messages).toHaveLength(2);
    expect(codesSentTo(t.betatel, to)).toEqual([code, code]);
  });

  it("when a resend is refused by Betatel, then the send and the cooldown are given back and the error names the verification", async () => {
    const { id, to, code } = await aVerification();
    await moveClock("last_sent_at = last_sent_at - interval '31 seconds'", id);

    t.betatel.reply({ status: 400, body: { message: "number cannot receive WhatsApp now" } });
    const refused = await startVerification(t.app, owner.auth, to).expect(422);
    expect(refused.body).toMatchObject({ code: "provider_rejected", id });

    const resent = await startVerification(t.app, owner.auth, to).expect(200);
    expect(resent.body).toMatchObject({ id, sendsLeft: 3 });
    expect(codesSentTo(t.betatel, to)).toEqual([code, code, code]);
  });

  it("when Betatel answers a resend with 503 (the code may be out), then it counts and the error names the verification", async () => {
    const { id, to } = await aVerification();
    await moveClock("last_sent_at = last_sent_at - interval '31 seconds'", id);

    t.betatel.reply({ status: 503, body: "try later" });
    const failed = await startVerification(t.app, owner.auth, to).expect(502);
    expect(failed.body).toMatchObject({ code: "provider_unavailable", id });
    const tooSoon = await startVerification(t.app, owner.auth, to).expect(429);
    expect(tooSoon.body).toMatchObject({ code: "resend_too_soon", id });
  });

  it("when the code was sent 5 times, then 429 max_sends_reached", async () => {
    const { id, to } = await aVerification();
    for (let send = 2; send <= 5; send++) {
      await moveClock("last_sent_at = last_sent_at - interval '31 seconds'", id);
      await startVerification(t.app, owner.auth, to).expect(200);
    }
    await moveClock("last_sent_at = last_sent_at - interval '31 seconds'", id);
    const res = await startVerification(t.app, owner.auth, to).expect(429);
    expect(res.body).toMatchObject({ code: "max_sends_reached", id });
    expect(codesSentTo(t.betatel, to)).toHaveLength(5);
  });

  it("when the same Idempotency-Key is sent twice, then the first answer comes back and one code went out", async () => {
    const to = aPhoneNumber();
    const key = `verify-${to}`;
    const first = await startVerification(t.app, owner.auth, to).set("Idempotency-Key", key).expect(201);
    const again = await startVerification(t.app, owner.auth, to).set("Idempotency-Key", key).expect(201);
    expect(again.body).toEqual(first.body);
    expect(codesSentTo(t.betatel, to)).toHaveLength(1);
    const other = await startVerification(t.app, owner.auth, aPhoneNumber()).set("Idempotency-Key", key).expect(422);
    expect(other.body.code).toBe("idempotency_key_reused");
  });

  it("when the same Idempotency-Key is sent again after a 201, then the replay has the Location too", async () => {
    const to = aPhoneNumber();
    const key = `verify-location-${to}`;
    const first = await startVerification(t.app, owner.auth, to).set("Idempotency-Key", key).expect(201);
    const again = await startVerification(t.app, owner.auth, to).set("Idempotency-Key", key).expect(201);
    expect(again.headers.location).toBe(first.headers.location);
  });

  it("when Betatel answers 500 (the code may be out), then the verification stays, named in the answer, and the key replays it", async () => {
    const to = aPhoneNumber();
    const key = `verify-500-${to}`;
    t.betatel.reply({ status: 500, body: "internal error" });
    const failed = await startVerification(t.app, owner.auth, to).set("Idempotency-Key", key).expect(502);
    const replayed = await startVerification(t.app, owner.auth, to).set("Idempotency-Key", key).expect(502);

    expect(failed.body).toMatchObject({ code: "provider_unavailable", id: expect.stringMatching(/^ver_/) });
    expect(replayed.body).toEqual(failed.body);
    expect(replayed.headers["content-type"]).toMatch(/^application\/problem\+json/);
    expect(codesSentTo(t.betatel, to)).toHaveLength(1);
    // The person may have the code: it still approves the verification.
    const code = lastCodeSentTo(t.betatel, to);
    const checked = await checkCode(t.app, owner.auth, failed.body.id, code).expect(200);
    expect(checked.body.status).toBe("approved");
  });

  it("when Betatel refuses and quotes the code in its own way, then the caller never sees Betatel's words", async () => {
    const to = aPhoneNumber();
    t.betatel.always((sent) => {
      const code = /code is (\d+)/.exec((sent.json as { text: string }).text)?.[1] ?? "";
      return { status: 400, body: { message: `Template rejected near '${code.split("").join(" ")}' (${code})` } };
    });
    const refused = await startVerification(t.app, owner.auth, to).expect(422);
    const code = lastCodeSentTo(t.betatel, to);

    expect(refused.body.code).toBe("provider_rejected");
    expect(refused.text).not.toContain(code);
    expect(refused.text).not.toContain(code.split("").join(" "));
  });

  it("when Betatel refuses, then the send error is answered and nothing is kept", async () => {
    const to = aPhoneNumber();
    t.betatel.reply({ status: 400, body: { message: "number cannot receive WhatsApp" } });
    const refused = await startVerification(t.app, owner.auth, to).expect(422);
    expect(refused.body.code).toBe("provider_rejected");
    const { rows } = await t.db.pool.query(`SELECT count(*)::int AS n FROM verifications WHERE "to" = $1`, [to]);
    expect(rows[0].n).toBe(0);
    await startVerification(t.app, owner.auth, to).expect(201);
  });

  it.each([
    [{}, "to"],
    [{ to: "12" }, "to"],
    [{ to: "38761444555", code: "1" }, "code"],
    [{ to: "38761444555", metadata: { flow: "sign\u0000up" } }, "metadata.flow"],
  ])("when the body is %o, then 400 names %s", async (body, path) => {
    const res = await request(t.app).post("/v1/verifications").set(owner.auth).send(body).expect(400);
    expect(res.body.errors.map((e: { path: string }) => e.path)).toContain(path);
    expect(t.betatel.requests).toHaveLength(0);
  });
});

describe("POST /v1/verifications/:id/check", () => {
  it("when the right code is checked, then it is approved once, and a second check answers 409", async () => {
    const { id, code } = await aVerification();
    const approved = await checkCode(t.app, owner.auth, id, code).expect(200);
    expect(approved.body).toMatchObject({ id, status: "approved", checksLeft: 5 });
    expect(approved.body.approvedAt).not.toBeNull();
    const again = await checkCode(t.app, owner.auth, id, code).expect(409);
    expect(again.body).toMatchObject({ code: "verification_closed", status: "approved" });
  });

  it.each(["", " ", "-----", "１２３４５６", "12ab56"])(
    "when the code is %j (no digits, or not only digits), then 400 and no check is used",
    async (code) => {
      const { id } = await aVerification();
      const res = await checkCode(t.app, owner.auth, id, code).expect(400);
      expect(res.body.errors.map((e: { path: string }) => e.path)).toContain("code");
      const read = await request(t.app).get(`/v1/verifications/${id}`).set(owner.auth).expect(200);
      expect(read.body.checksLeft).toBe(5);
    },
  );

  it("when the code is typed with spaces or dashes, then it still matches", async () => {
    const { id, code } = await aVerification();
    await checkCode(t.app, owner.auth, id, `${code.slice(0, 3)} ${code.slice(3)}`).expect(200);
  });

  it("when 5 wrong codes are checked, then it ends max_attempts_reached and the right code no longer works", async () => {
    const { id, code } = await aVerification();
    for (let wrong = 1; wrong <= 4; wrong++) {
      const res = await checkCode(t.app, owner.auth, id, wrongCode(code, wrong)).expect(200);
      expect(res.body).toMatchObject({ status: "pending", checksLeft: 5 - wrong });
    }
    const last = await checkCode(t.app, owner.auth, id, wrongCode(code, 5)).expect(200);
    expect(last.body).toMatchObject({ status: "max_attempts_reached", checksLeft: 0 });
    const closed = await checkCode(t.app, owner.auth, id, code).expect(409);
    expect(closed.body).toMatchObject({ code: "verification_closed", status: "max_attempts_reached" });
  });

  it("when a resend follows wrong codes, then the checks used stay used", async () => {
    const { id, to, code } = await aVerification();
    await checkCode(t.app, owner.auth, id, wrongCode(code)).expect(200);
    await moveClock("last_sent_at = last_sent_at - interval '31 seconds'", id);
    const resent = await startVerification(t.app, owner.auth, to).expect(200);
    expect(resent.body.checksLeft).toBe(4);
  });

  it("when it has expired, then GET shows expired and a check answers 409", async () => {
    const { id, code } = await aVerification();
    await moveClock("expires_at = now() - interval '1 second'", id);
    expect((await request(t.app).get(`/v1/verifications/${id}`).set(owner.auth).expect(200)).body.status).toBe(
      "expired",
    );
    const res = await checkCode(t.app, owner.auth, id, code).expect(409);
    expect(res.body).toMatchObject({ code: "verification_closed", status: "expired" });
  });

  it("when an expired number is asked for again, then a new verification with a new budget starts", async () => {
    const { id, to } = await aVerification();
    await moveClock("expires_at = now() - interval '1 second'", id);
    const fresh = await startVerification(t.app, owner.auth, to).expect(201);
    expect(fresh.body.id).not.toBe(id);
    expect(fresh.body).toMatchObject({ checksLeft: 5, sendsLeft: 4 });
  });
});

describe("POST /v1/verifications/check (by number)", () => {
  it("when the number's pending verification gets its code, then it is approved", async () => {
    const { id, to, code } = await aVerification();
    const res = await request(t.app).post("/v1/verifications/check").set(owner.auth).send({ to, code }).expect(200);
    expect(res.body).toMatchObject({ id, status: "approved" });
    const none = await request(t.app).post("/v1/verifications/check").set(owner.auth).send({ to, code }).expect(404);
    expect(none.body.code).toBe("verification_not_found");
  });
});

describe("cancel, read and team scope", () => {
  it("when canceled, then checks and a second cancel answer 409", async () => {
    const { id, code } = await aVerification();
    const canceled = await request(t.app).post(`/v1/verifications/${id}/cancel`).set(owner.auth).expect(200);
    expect(canceled.body.status).toBe("canceled");
    await checkCode(t.app, owner.auth, id, code).expect(409);
    await request(t.app).post(`/v1/verifications/${id}/cancel`).set(owner.auth).expect(409);
  });

  it("when another team asks, then the verification does not exist for it", async () => {
    const { id, to, code } = await aVerification();
    for (const res of [
      await request(t.app).get(`/v1/verifications/${id}`).set(other.auth),
      await checkCode(t.app, other.auth, id, code),
      await request(t.app).post(`/v1/verifications/${id}/cancel`).set(other.auth),
      await request(t.app).post("/v1/verifications/check").set(other.auth).send({ to, code }),
    ]) {
      expect(res.status).toBe(404);
      expect(res.body.code).toBe("verification_not_found");
    }
    await checkCode(t.app, owner.auth, id, code).expect(200);
  });

  it("when GET reads it, then each of its messages shows its delivery status", async () => {
    const { id, body } = await aVerification();
    const uuid = body.messages[0].uuid;
    await request(t.app).post("/webhooks/betatel").send({ uuid, status: "DELIVERED" }).expect(200);
    const res = await request(t.app).get(`/v1/verifications/${id}`).set(owner.auth).expect(200);
    expect(res.body.messages).toEqual([{ uuid, status: "DELIVERED", createdAt: body.messages[0].createdAt }]);
  });

  it.each(["nope", "ver_123", "ver_01JV5V54KPYK9GB29265EQRZ2P!"])(
    "when the id is %s, then 400 or 404, never 5xx",
    async (id) => {
      const res = await request(t.app)
        .get(`/v1/verifications/${encodeURIComponent(id)}`)
        .set(owner.auth);
      expect([400, 404]).toContain(res.status);
      expect(res.type).toBe("application/problem+json");
    },
  );
});
