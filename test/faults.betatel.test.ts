import request from "supertest";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { Reply } from "./support/fake-betatel.ts";
import { aPhoneNumber, startTestApp, type TestApp } from "./support/test-app.ts";

const TIMEOUT_MS = 500;
// The answer may come a little after the Betatel deadline (reading, storing, scheduling on a busy machine).
const BOUND_MS = TIMEOUT_MS + 1_000;
const OTP = "Your code is 975310";

let t: TestApp;
beforeAll(async () => {
  t = await startTestApp({ BETATEL_TIMEOUT_MS: String(TIMEOUT_MS) });
});
afterAll(() => t.close());
beforeEach(() => t.betatel.reset());

async function sendTimed() {
  const started = Date.now();
  const res = await request(t.app).post("/v1/messages").send({ to: aPhoneNumber(), text: OTP });
  return { res, elapsed: Date.now() - started };
}

const huge = "x".repeat(5 * 1024 * 1024);

describe("when Betatel misbehaves", () => {
  it.each<[string, number, string, Reply]>([
    ["never answers", 504, "provider_timeout", { hang: true }],
    ["answers after 3 s", 504, "provider_timeout", { status: 200, body: { uuid: "01LATE", to: "1" }, delayMs: 3_000 }],
    ["streams an endless body", 504, "provider_timeout", { stream: "endless" }],
    ["resets the connection", 502, "provider_unavailable", { reset: true }],
    [
      "answers 200 with HTML",
      502,
      "provider_unavailable",
      { status: 200, body: "<html><body>Welcome</body></html>", contentType: "text/html" },
    ],
    [
      "answers 500 with HTML",
      502,
      "provider_unavailable",
      { status: 500, body: "<html>Internal Server Error</html>", contentType: "text/html" },
    ],
    [
      "answers 200 with 5 MB of JSON",
      502,
      "provider_unavailable",
      { status: 200, body: { uuid: "01HUGE", pad: huge } },
    ],
    ["answers 400 with a 5 MB reason", 422, "provider_rejected", { status: 400, body: { message: huge } }],
    ["answers 200 without a uuid", 502, "provider_unavailable", { status: 200, body: { id: "01NOUUID" } }],
    [
      "answers 200 with a 10,000 character uuid",
      502,
      "provider_unavailable",
      { status: 200, body: { uuid: "u".repeat(10_000) } },
    ],
    [
      "answers 200 with a uuid holding NUL",
      502,
      "provider_unavailable",
      { status: 200, body: { uuid: "01AB\u0000CD" } },
    ],
    [
      "answers 200 with a uuid holding a slash",
      502,
      "provider_unavailable",
      { status: 200, body: { uuid: "../../admin" } },
    ],
    ["answers 200 with an empty body", 502, "provider_unavailable", { status: 200 }],
    ["answers 401 in plain text", 502, "provider_auth_failed", { status: 401, body: "Invalid API Key" }],
    ["answers 402 in plain text", 502, "provider_payment_required", { status: 402, body: "Insufficient balance" }],
    ["answers 302 to elsewhere", 502, "provider_unavailable", { status: 302, body: "" }],
  ])("when Betatel %s, then the caller gets %i %s within the Betatel timeout", async (_name, status, code, reply) => {
    t.betatel.reply(reply);
    const { res, elapsed } = await sendTimed();
    expect(res.status).toBe(status);
    expect(res.headers["content-type"]).toMatch(/^application\/problem\+json/);
    expect(res.body.code).toBe(code);
    expect(elapsed).toBeLessThan(BOUND_MS);
    expect(res.text.length).toBeLessThan(2_000);
    expect(res.text).not.toContain(OTP);
  });

  it("when Betatel echoes the OTP text in its rejection, then the reason is passed on without it", async () => {
    t.betatel.reply({ status: 400, body: { message: `Cannot deliver "${OTP}" to this number` } });
    const { res } = await sendTimed();
    expect(res.status).toBe(422);
    expect(res.body.detail).toContain("Cannot deliver");
    expect(res.text).not.toContain(OTP);
    expect(t.logs.text).not.toContain(OTP);
  });

  it("when 20 sends hang at once, then all answer 504 within the bound and the service keeps serving", async () => {
    t.betatel.always({ hang: true });
    const started = Date.now();
    const results = await Promise.all(Array.from({ length: 20 }, () => sendTimed()));
    expect(results.map(({ res }) => res.status)).toEqual(Array(20).fill(504));
    expect(Date.now() - started).toBeLessThan(BOUND_MS + 1_000);

    t.betatel.reset();
    const { res } = await sendTimed();
    expect(res.status).toBe(201);
    expect(t.logs.text).not.toContain("unhandled error");
  });
});
