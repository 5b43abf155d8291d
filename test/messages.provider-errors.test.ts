import request from "supertest";
import { afterAll, beforeAll, beforeEach, describe, expect, it, onTestFailed } from "vitest";
import { aClosedPort, type Reply } from "./support/fake-betatel.ts";
import { anOtp, messagesTo, tablesContaining } from "./support/message-tables.ts";
import { aPhoneNumber, startTestApp, type TestApp } from "./support/test-app.ts";

const TIMEOUT_MS = 400;

let t: TestApp;
beforeAll(async () => {
  t = await startTestApp({ BETATEL_TIMEOUT_MS: String(TIMEOUT_MS), LOG_LEVEL: "trace" });
});
afterAll(() => t.close());
beforeEach(() => {
  t.betatel.reset();
  // A hang here once ran into the 30 s test timeout with nothing to show: a failure prints the service's log.
  onTestFailed(() => console.error(t.logs.text.slice(-8000)));
});

interface Case {
  name: string;
  reply: Reply;
  status: number;
  code: string;
  detail?: string;
}

const failures: Case[] = [
  {
    name: "400 with a JSON reason",
    reply: { status: 400, body: { message: "Number is not on WhatsApp", error: "Bad Request" } },
    status: 422,
    code: "provider_rejected",
    detail: "Number is not on WhatsApp",
  },
  {
    name: "400 with a plain-text reason",
    reply: { status: 400, body: "to: invalid destination" },
    status: 422,
    code: "provider_rejected",
    detail: "to: invalid destination",
  },
  {
    name: "401 with plain text",
    reply: { status: 401, body: "Invalid API Key" },
    status: 502,
    code: "provider_auth_failed",
  },
  {
    name: "402 with plain text",
    reply: { status: 402, body: "Insufficient balance" },
    status: 502,
    code: "provider_payment_required",
  },
  {
    name: "500 with Betatel's JSON error",
    reply: { status: 500, body: { message: "Internal server error", error: "Internal Server Error" } },
    status: 502,
    code: "provider_unavailable",
  },
  {
    name: "500 with an HTML page",
    reply: { status: 500, body: "<html><body><h1>502 Bad Gateway</h1></body></html>", contentType: "text/html" },
    status: 502,
    code: "provider_unavailable",
  },
  { name: "503 with an empty body", reply: { status: 503 }, status: 502, code: "provider_unavailable" },
  {
    name: "2xx without a uuid",
    reply: { status: 200, body: { to: "38761444555" } },
    status: 502,
    code: "provider_unavailable",
  },
  {
    name: "2xx with a body that is not JSON",
    reply: { status: 200, body: "OK", contentType: "text/plain" },
    status: 502,
    code: "provider_unavailable",
  },
  {
    name: "2xx with JSON that is not an object",
    reply: { status: 201, body: "[1,2]", contentType: "application/json" },
    status: 502,
    code: "provider_unavailable",
  },
  { name: "no answer at all (hang)", reply: { hang: true }, status: 504, code: "provider_timeout" },
  {
    name: "headers and then an endless body",
    reply: { stream: "endless" },
    status: 504,
    code: "provider_timeout",
  },
  {
    name: "an answer slower than the timeout",
    reply: { status: 200, body: { uuid: "01JV5V54KPYK9GB29265EQRZ2P" }, delayMs: TIMEOUT_MS * 3 },
    status: 504,
    code: "provider_timeout",
  },
  {
    name: "the connection reset after the request",
    reply: { reset: true },
    status: 502,
    code: "provider_unavailable",
  },
];

describe("POST /v1/messages when Betatel fails", () => {
  it.each(failures)("when Betatel answers $name, then $status $code, one call, nothing stored", async (c) => {
    const to = aPhoneNumber();
    const otp = anOtp();
    t.betatel.reply(c.reply);

    const started = Date.now();
    const res = await request(t.app)
      .post("/v1/messages")
      .timeout(TIMEOUT_MS + 10_000)
      .send({ to, text: otp.text });

    expect(res.status).toBe(c.status);
    expect(res.headers["content-type"]).toMatch(/^application\/problem\+json/);
    expect(res.body).toMatchObject({
      status: c.status,
      code: c.code,
      type: expect.any(String),
      title: expect.any(String),
    });
    if (c.detail) expect(res.body.detail).toBe(c.detail);
    expect(res.headers.location).toBeUndefined();
    // Never retried: Betatel may have received (and sent) the first one.
    expect(t.betatel.requests).toHaveLength(1);
    expect(await messagesTo(t.db, to)).toBe(0);
    expect(await tablesContaining(t.db, otp.code)).toEqual([]);
    expect(t.logs.text).not.toContain(otp.code);
    // The timeout is one deadline for the whole call, body included.
    expect(Date.now() - started).toBeLessThan(TIMEOUT_MS + 1500);
  });

  it("when Betatel's 401 body names a reason, then the caller does not see Betatel's words (they are ours to fix)", async () => {
    t.betatel.reply({ status: 401, body: "Invalid API Key test-betatel-key" });

    const res = await request(t.app).post("/v1/messages").send({ to: aPhoneNumber(), text: "1234" });

    expect(res.status).toBe(502);
    expect(JSON.stringify(res.body)).not.toContain("test-betatel-key");
  });

  it("when Betatel's 400 reason echoes the OTP text, then the detail carries it redacted", async () => {
    const otp = anOtp();
    t.betatel.reply({ status: 400, body: { message: `Text "${otp.text}" is not allowed` } });

    const res = await request(t.app).post("/v1/messages").send({ to: aPhoneNumber(), text: otp.text });

    expect(res.status).toBe(422);
    expect(res.body.detail).toBe('Text "[redacted]" is not allowed');
    expect(t.logs.text).not.toContain(otp.code);
  });

  it("when Betatel answers a 400 with a multi-megabyte body, then the detail is one short line", async () => {
    t.betatel.reply({ status: 400, body: `too long\n${"x".repeat(5_000_000)}` });

    const res = await request(t.app).post("/v1/messages").send({ to: aPhoneNumber(), text: "1234" });

    expect(res.status).toBe(422);
    expect(res.body.detail.length).toBeLessThanOrEqual(300);
    expect(res.body.detail).toMatch(/^too long x+$/);
  });

  it("when Betatel answers a multi-megabyte 2xx, then 502 provider_unavailable and nothing stored", async () => {
    const to = aPhoneNumber();
    t.betatel.reply({ status: 200, body: { uuid: "01JV5V54KPYK9GB29265EQRZ2Q", padding: "x".repeat(5_000_000) } });

    const res = await request(t.app).post("/v1/messages").send({ to, text: "1234" });

    expect(res.status).toBe(502);
    expect(res.body.code).toBe("provider_unavailable");
    expect(await messagesTo(t.db, to)).toBe(0);
  });

  it("when Betatel answered 5xx, then the next request calls Betatel again and succeeds", async () => {
    const to = aPhoneNumber();
    t.betatel.reply({ status: 500, body: "oops" });

    const failed = await request(t.app).post("/v1/messages").send({ to, text: "1234" });
    const retried = await request(t.app).post("/v1/messages").send({ to, text: "1234" });

    expect(failed.status).toBe(502);
    expect(retried.status).toBe(201);
    expect(t.betatel.requests).toHaveLength(2);
    expect(await messagesTo(t.db, to)).toBe(1);
  });
});

describe("POST /v1/messages when Betatel cannot be reached", () => {
  it("when the connection is refused, then 502 provider_unavailable after bounded retries, nothing stored", async () => {
    const closedPort = await aClosedPort();
    const unreachable = await startTestApp({ BETATEL_BASE_URL: `http://127.0.0.1:${closedPort}` });
    try {
      const to = aPhoneNumber();
      const started = Date.now();
      const res = await request(unreachable.app).post("/v1/messages").send({ to, text: "1234" });

      expect(res.status).toBe(502);
      expect(res.body).toMatchObject({ code: "provider_unavailable", detail: expect.stringContaining("ECONNREFUSED") });
      // Bounded: the retries are few and short, well within the Betatel timeout.
      expect(Date.now() - started).toBeLessThan(2000);
      expect(await messagesTo(unreachable.db, to)).toBe(0);
    } finally {
      await unreachable.close();
    }
  });
});
