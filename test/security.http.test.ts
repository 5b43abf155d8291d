import request from "supertest";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { createScratchDatabase, openDatabaseAt } from "./support/scratch-database.ts";
import { runServer } from "./support/spawn-server.ts";
import { aPhoneNumber, startTestApp, startTestAppOn, type TestApp } from "./support/test-app.ts";

const KEY_A = "key-a-0123456789abcdef";
const KEY_B = "key-b-fedcba9876543210";
// Its own key, so the rate limit test's counts are not shared with other tests.
const KEY_C = "key-c-00112233445566778899";

let t: TestApp;
beforeAll(async () => {
  t = await startTestApp({ API_KEYS: `${KEY_A}, ${KEY_B},${KEY_C}`, RATE_LIMIT_PER_MINUTE: "3" });
});
afterAll(() => t.close());
beforeEach(() => t.betatel.reset());

const send = (headers: Record<string, string>) =>
  request(t.app).post("/v1/messages").set(headers).send({ to: aPhoneNumber(), text: "Your code is 111111" });

function expectProblem(res: request.Response, status: number, code: string) {
  expect(res.status).toBe(status);
  expect(res.headers["content-type"]).toMatch(/^application\/problem\+json/);
  expect(res.body).toMatchObject({ status, code, title: expect.any(String), type: expect.any(String) });
}

describe("API keys on /v1/* and /messages/:uuid", () => {
  it.each([
    ["no key", {}],
    ["a wrong bearer key", { authorization: "Bearer nope" }],
    ["a wrong x-api-key", { "x-api-key": "nope" }],
    ["a key that is a prefix of a real one", { "x-api-key": KEY_A.slice(0, -1) }],
    ["a real key with a suffix", { "x-api-key": `${KEY_A}x` }],
    ["the key in the wrong scheme", { authorization: `Basic ${KEY_A}` }],
    ["both keys joined", { "x-api-key": `${KEY_A},${KEY_B}` }],
  ])(
    "when the request has %s, then every /v1 route answers 401 problem+json and Betatel is not called",
    async (_name, headers) => {
      const post = await send(headers);
      expectProblem(post, 401, "unauthorized");
      expect(post.headers["www-authenticate"]).toMatch(/^Bearer/);
      expectProblem(await request(t.app).get("/v1/messages/01ABC").set(headers), 401, "unauthorized");
      expectProblem(await request(t.app).get("/messages/01ABC").set(headers), 401, "unauthorized");
      expect(t.betatel.requests).toHaveLength(0);
    },
  );

  it("when either key is presented as Bearer or x-api-key, then the request is served", async () => {
    for (const headers of [{ authorization: `Bearer ${KEY_A}` }, { "x-api-key": KEY_B }]) {
      const res = await request(t.app).get("/v1/messages/01UNKNOWN").set(headers);
      expectProblem(res, 404, "message_not_found");
    }
  });
});

describe("security headers", () => {
  it("when any route answers, then helmet's headers are present and x-powered-by is not", async () => {
    for (const path of ["/healthz", "/v1/messages/x", "/no-such-route"]) {
      const res = await request(t.app).get(path);
      expect(res.headers["x-content-type-options"]).toBe("nosniff");
      expect(res.headers["x-frame-options"]).toBe("SAMEORIGIN");
      expect(res.headers["strict-transport-security"]).toMatch(/max-age=\d+/);
      expect(res.headers["content-security-policy"]).toContain("default-src 'self'");
      expect(res.headers["x-powered-by"]).toBeUndefined();
    }
  });
});

describe("rate limit on POST /v1/messages", () => {
  it("when one key sends more than RATE_LIMIT_PER_MINUTE, then it gets 429 with Retry-After and other keys are unaffected", async () => {
    const statuses: number[] = [];
    let limited: request.Response | undefined;
    for (let i = 0; i < 4; i++) {
      const res = await send({ "x-api-key": KEY_A });
      statuses.push(res.status);
      if (res.status === 429) limited = res;
    }
    expect(statuses).toEqual([201, 201, 201, 429]);
    expect(limited).toBeDefined();
    expectProblem(limited as request.Response, 429, "rate_limited");
    expect(Number(limited?.headers["retry-after"])).toBeGreaterThan(0);
    expect(Number(limited?.headers["retry-after"])).toBeLessThanOrEqual(60);
    expect(t.betatel.requests).toHaveLength(3);

    // The limit is per key, and reading is not limited.
    expect((await send({ authorization: `Bearer ${KEY_B}` })).status).toBe(201);
    expect((await request(t.app).get("/v1/messages/01UNKNOWN").set("x-api-key", KEY_A)).status).toBe(404);
  });
});

describe("body and batch limits", () => {
  it("when POST /v1/messages carries more than 64 kB, then 413 problem+json", async () => {
    const res = await request(t.app)
      .post("/v1/messages")
      .set("x-api-key", KEY_C)
      .set("content-type", "application/json")
      .send(JSON.stringify({ to: aPhoneNumber(), text: "x".repeat(70_000) }));
    expectProblem(res, 413, "payload_too_large");
  });

  it("when the webhook carries more than 1 MiB or more than 1000 items, then 413 problem+json", async () => {
    const huge = await request(t.app)
      .post("/webhooks/betatel")
      .set("content-type", "application/json")
      .send(JSON.stringify([{ uuid: "a", status: "SENT", pad: "x".repeat(1024 * 1024) }]));
    expectProblem(huge, 413, "payload_too_large");
    const many = await request(t.app)
      .post("/webhooks/betatel")
      .send(Array.from({ length: 1001 }, (_, i) => ({ uuid: `u${i}`, status: "BOGUS" })));
    expectProblem(many, 413, "payload_too_large");
  });
});

describe("start-up in production", () => {
  const base = {
    NODE_ENV: "production",
    VERIFY_SECRET: "test-verify-secret-test-verify-secret-0123",
    DATABASE_URL: "postgresql://postgres@127.0.0.1:1/never-reached",
    API_KEYS: "k1",
    WEBHOOK_SECRET: "s1",
    WATCH_SECRET: "w1-watch-secret-of-thirty-two-characters",
    BETATEL_API_KEY: "b1",
    BETATEL_ACCOUNT_ID: "a1",
  };
  it.each([
    [["API_KEYS"], "API_KEYS: required when NODE_ENV=production"],
    [["WEBHOOK_SECRET"], "WEBHOOK_SECRET: required when NODE_ENV=production"],
    [["VERIFY_SECRET"], "VERIFY_SECRET: required when NODE_ENV=production"],
    [["WATCH_SECRET"], "WATCH_SECRET: required when NODE_ENV=production"],
    [["DATABASE_URL"], "DATABASE_URL: required when NODE_ENV=production"],
    [
      ["BETATEL_API_KEY", "BETATEL_ACCOUNT_ID"],
      "BETATEL_API_KEY, BETATEL_ACCOUNT_ID: required when NODE_ENV=production",
    ],
    [["BETATEL_API_KEY"], "BETATEL_API_KEY: set both Betatel credentials or neither"],
    [["BETATEL_ACCOUNT_ID"], "BETATEL_ACCOUNT_ID: set both Betatel credentials or neither"],
  ])("when %s is missing, then the process exits 1 with one line naming it", async (missing, named) => {
    const env: Record<string, string> = { ...base };
    for (const name of missing) delete env[name];
    const run = runServer(env);
    expect(await run.exited).toBe(1);
    const lines = run.output().trim().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toBe(`Invalid configuration: ${named}`);
    // The values of the secrets that were set are not echoed.
    for (const secret of ["k1", "s1", "w1-watch-secret-of-thirty-two-characters", "b1", "a1"])
      expect(lines[0]).not.toMatch(new RegExp(`\\b${secret}\\b`));
  });
});

describe("rate limit without API_KEYS", () => {
  it("when API_KEYS is unset, then callers are limited by address instead", async () => {
    // A database of its own: the count is shared by every instance on a database, and other test files'
    // servers also call from 127.0.0.1.
    const scratch = await createScratchDatabase("ratelimit");
    const open = await startTestAppOn(await openDatabaseAt(scratch.url), { RATE_LIMIT_PER_MINUTE: "2" });
    try {
      const statuses: number[] = [];
      for (let i = 0; i < 3; i++) {
        const res = await request(open.app)
          .post("/v1/messages")
          .send({ to: aPhoneNumber(), text: "Your code is 222222" });
        statuses.push(res.status);
      }
      expect(statuses).toEqual([201, 201, 429]);
    } finally {
      await open.close();
      await scratch.drop();
    }
  });
});

describe("duplicate JSON keys", () => {
  it("when a key appears twice, then the last value is the one validated and used (as JSON.parse reads it)", async () => {
    const first = aPhoneNumber();
    const last = aPhoneNumber();
    const res = await request(t.app)
      .post("/v1/messages")
      .set({ "x-api-key": KEY_C, "content-type": "application/json" })
      .send(`{"to": "${first}", "text": "Your code is 1", "to": "${last}", "text": "Your code is 2"}`);
    expect(res.status).toBe(201);
    expect(res.body.to).toBe(last);
    expect(t.betatel.requests.map((call) => call.json)).toEqual([{ to: last, text: "Your code is 2" }]);
  });
});
