import request from "supertest";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createWatchAccess } from "../src/live/watch-token.ts";
import { listen, openEventStream } from "./support/live-fixtures.ts";
import { aPhoneNumber, startTestApp, type TestApp } from "./support/test-app.ts";

/** Browsers: a message's `watchUrl` reads its live status without an API key, cross-origin from CORS_ORIGINS. */
const API_KEY = "watch-test-key";
const PAGE = "https://app.example.com";
const WATCH_SECRET = "watch-test-secret-0123456789abcdef0123";

let t: TestApp;
let server: Awaited<ReturnType<typeof listen>>;
beforeAll(async () => {
  t = await startTestApp({
    API_KEYS: API_KEY,
    WATCH_SECRET,
    CORS_ORIGINS: `${PAGE},http://localhost:5173`,
    LOG_LEVEL: "silent",
  });
  server = await listen(t.app);
});
afterAll(async () => {
  await server?.close();
  await t?.close();
});

async function aMessage(): Promise<{ uuid: string; watchUrl: string }> {
  const res = await request(t.app)
    .post("/v1/messages")
    .set("x-api-key", API_KEY)
    .send({ to: aPhoneNumber(), text: "Your code is 246810" });
  expect(res.status).toBe(201);
  return res.body;
}

const tokenOf = (watchUrl: string) => new URL(watchUrl, "http://x").searchParams.get("watch") ?? "";

const postStatus = (uuid: string, status: string) =>
  request(t.app).post("/webhooks/betatel").send({ uuid, status, timestamp: new Date().toISOString() }).expect(200);

function expectProblem(res: request.Response, status: number, code: string) {
  expect(res.status, res.text).toBe(status);
  expect(res.headers["content-type"]).toMatch(/^application\/problem\+json/);
  expect(res.body).toMatchObject({ status, code });
}

describe("watchUrl", () => {
  it("when a message is sent, then the answer and GET carry a watchUrl that streams it with no API key", async () => {
    const { uuid, watchUrl } = await aMessage();
    expect(watchUrl).toMatch(new RegExp(`^/v1/messages/${uuid}/stream\\?watch=[0-9a-z]+\\.[\\w-]{24}$`));
    const read = await request(t.app).get(`/v1/messages/${uuid}`).set("x-api-key", API_KEY);
    expect(read.body.watchUrl).toMatch(new RegExp(`^/v1/messages/${uuid}/stream\\?watch=`));

    const stream = await openEventStream(`${server.url}${watchUrl}`);
    try {
      expect(stream.status).toBe(200);
      expect(await stream.event(0)).toMatchObject({ uuid, status: "PENDING" });
      // Events carry no watchUrl: a token never mints a longer-lived one.
      expect(stream.events[0]).not.toHaveProperty("watchUrl");
      await postStatus(uuid, "sent");
      expect(await stream.event(1)).toMatchObject({ uuid, status: "SENT" });
    } finally {
      stream.close();
    }
  });

  it("when the long-poll is called with the token, then it answers the message, without a new watchUrl", async () => {
    const { uuid, watchUrl } = await aMessage();
    const poll = request(t.app).get(`/v1/messages/${uuid}?waitFor=DELIVERED&timeout=10&watch=${tokenOf(watchUrl)}`);
    const answered = poll.then((res) => res);
    await new Promise((resolve) => setTimeout(resolve, 200));
    await postStatus(uuid, "delivered");
    const res = await answered;
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ uuid, status: "DELIVERED" });
    expect(res.body).not.toHaveProperty("watchUrl");
  });

  it("when the long-poll is called with an API key, then its answer carries a fresh watchUrl", async () => {
    const { uuid } = await aMessage();
    const res = await request(t.app).get(`/v1/messages/${uuid}?timeout=1`).set("x-api-key", API_KEY);
    expect(res.status).toBe(200);
    expect(res.body.watchUrl).toMatch(new RegExp(`^/v1/messages/${uuid}/stream\\?watch=`));
  });

  it("when PUBLIC_URL is set, then watchUrl is absolute under it", async () => {
    const behindProxy = await startTestApp({ PUBLIC_URL: "https://otp.example.com/", LOG_LEVEL: "silent" });
    try {
      const res = await request(behindProxy.app).post("/v1/messages").send({ to: aPhoneNumber(), text: "1357" });
      expect(res.body.watchUrl).toMatch(
        new RegExp(`^https://otp\\.example\\.com/v1/messages/${res.body.uuid}/stream\\?watch=`),
      );
    } finally {
      await behindProxy.close();
    }
  });
});

describe("watch token limits", () => {
  it("when a token of message A is used for message B, then 401 watch_token_invalid", async () => {
    const a = await aMessage();
    const b = await aMessage();
    const token = tokenOf(a.watchUrl);
    expectProblem(await request(t.app).get(`/v1/messages/${b.uuid}/stream?watch=${token}`), 401, "watch_token_invalid");
    expectProblem(
      await request(t.app).get(`/v1/messages/${b.uuid}?timeout=1&watch=${token}`),
      401,
      "watch_token_invalid",
    );
  });

  it("when the token is tampered with, malformed or repeated, then 401 watch_token_invalid", async () => {
    const { uuid, watchUrl } = await aMessage();
    const token = tokenOf(watchUrl);
    const [expiry = "", signature = ""] = token.split(".");
    const flipped = `${signature.slice(0, 5)}${signature[5] === "A" ? "B" : "A"}${signature.slice(6)}`;
    // A later expiry with the same signature: the expiry is signed too.
    const extended = `${(Number.parseInt(expiry, 36) + 3600).toString(36)}.${signature}`;
    for (const query of [
      `watch=${expiry}.${flipped}`,
      `watch=${extended}`,
      `watch=${expiry}.${signature.slice(0, -1)}`,
      "watch=",
      "watch=not-a-token",
      `watch=${token}&watch=${token}`,
    ]) {
      expectProblem(await request(t.app).get(`/v1/messages/${uuid}/stream?${query}`), 401, "watch_token_invalid");
    }
  });

  it("when 15 minutes have passed, then the token is refused with 401 watch_token_expired", async () => {
    const { uuid } = await aMessage();
    // Tokens the service's own code issued some minutes ago, with the service's key.
    const issuedMinutesAgo = (minutes: number) =>
      createWatchAccess({ secret: WATCH_SECRET, now: () => Date.now() - minutes * 60_000 }).issue(uuid);

    const stillValid = await request(t.app).get(`/v1/messages/${uuid}?timeout=1&watch=${issuedMinutesAgo(14)}`);
    expect(stillValid.status).toBe(200);

    const expired = issuedMinutesAgo(15.1);
    expectProblem(await request(t.app).get(`/v1/messages/${uuid}/stream?watch=${expired}`), 401, "watch_token_expired");
    expectProblem(
      await request(t.app).get(`/v1/messages/${uuid}?timeout=1&watch=${expired}`),
      401,
      "watch_token_expired",
    );
  });

  it("when a token was signed with another key, then 401 watch_token_invalid", async () => {
    const { uuid } = await aMessage();
    const forged = createWatchAccess({ secret: "another-key-of-more-than-thirty-two-chars" }).issue(uuid);
    expectProblem(await request(t.app).get(`/v1/messages/${uuid}/stream?watch=${forged}`), 401, "watch_token_invalid");
  });

  it("when the token is used for anything but the stream and long-poll of its message, then the API key is required", async () => {
    const { uuid, watchUrl } = await aMessage();
    const watch = `watch=${tokenOf(watchUrl)}`;
    expectProblem(await request(t.app).get(`/v1/messages/${uuid}?${watch}`), 401, "unauthorized");
    expectProblem(await request(t.app).get(`/v1/messages?${watch}`), 401, "unauthorized");
    expectProblem(
      await request(t.app).post(`/v1/messages?${watch}`).send({ to: aPhoneNumber(), text: "1234" }),
      401,
      "unauthorized",
    );
    expectProblem(await request(t.app).get(`/messages/${uuid}?timeout=1&${watch}`), 401, "unauthorized");
    // Without the token (and without a key), the watchable routes are closed as before.
    expectProblem(await request(t.app).get(`/v1/messages/${uuid}/stream`), 401, "unauthorized");
  });

  it("when a page opens more streams than LIVE_MAX_WATCHERS_PER_KEY with one message's tokens, then 429, and API keys are not affected", async () => {
    const capped = await startTestApp({ API_KEYS: API_KEY, LIVE_MAX_WATCHERS_PER_KEY: "2", LOG_LEVEL: "silent" });
    const capServer = await listen(capped.app);
    const streams: Array<Awaited<ReturnType<typeof openEventStream>>> = [];
    try {
      const sent = await request(capped.app)
        .post("/v1/messages")
        .set("x-api-key", API_KEY)
        .send({ to: aPhoneNumber(), text: "1234" });
      const other = await request(capped.app).get(`/v1/messages/${sent.body.uuid}`).set("x-api-key", API_KEY);
      // Two different tokens of the same message share its cap.
      for (const url of [sent.body.watchUrl, other.body.watchUrl]) {
        const stream = await openEventStream(`${capServer.url}${url}`);
        streams.push(stream);
        expect(stream.status).toBe(200);
      }
      const third = await request(capped.app).get(sent.body.watchUrl);
      expectProblem(third, 429, "too_many_watchers");
      const byKey = await openEventStream(`${capServer.url}/v1/messages/${sent.body.uuid}/stream`, {
        "x-api-key": API_KEY,
      });
      streams.push(byKey);
      expect(byKey.status).toBe(200);
    } finally {
      for (const stream of streams) stream.close();
      await capServer.close();
      await capped.close();
    }
  });
});

describe("CORS_ORIGINS", () => {
  it("when a listed origin reads the stream or the long-poll, then the origin is echoed, with Vary: Origin and no credentials", async () => {
    const { uuid, watchUrl } = await aMessage();
    const stream = await fetch(`${server.url}${watchUrl}`, { headers: { origin: PAGE } });
    try {
      expect(stream.status).toBe(200);
      expect(stream.headers.get("access-control-allow-origin")).toBe(PAGE);
      expect(stream.headers.get("vary")).toMatch(/\borigin\b/i);
      expect(stream.headers.get("access-control-allow-credentials")).toBeNull();
    } finally {
      await stream.body?.cancel();
    }
    const poll = await request(t.app)
      .get(`/v1/messages/${uuid}?timeout=1&watch=${tokenOf(watchUrl)}`)
      .set("origin", "http://localhost:5173");
    expect(poll.status).toBe(200);
    expect(poll.headers["access-control-allow-origin"]).toBe("http://localhost:5173");
    // A refused token is readable by the page too (it can tell an expired link from a broken one).
    const refused = await request(t.app).get(`/v1/messages/${uuid}/stream?watch=x`).set("origin", PAGE);
    expect(refused.status).toBe(401);
    expect(refused.headers["access-control-allow-origin"]).toBe(PAGE);
  });

  it("when the preflight asks for Last-Event-ID, then it is allowed for GET, but not the API key headers", async () => {
    const { uuid } = await aMessage();
    const preflight = await request(t.app)
      .options(`/v1/messages/${uuid}/stream`)
      .set("origin", PAGE)
      .set("access-control-request-method", "GET")
      .set("access-control-request-headers", "last-event-id");
    expect(preflight.status).toBe(204);
    expect(preflight.headers["access-control-allow-origin"]).toBe(PAGE);
    expect(preflight.headers["access-control-allow-methods"]).toBe("GET");
    expect(preflight.headers["access-control-allow-headers"]?.toLowerCase()).toContain("last-event-id");
    expect(preflight.headers["access-control-allow-headers"]?.toLowerCase()).not.toMatch(/authorization|x-api-key/);
  });

  it("when an origin is not listed, then no CORS header allows it", async () => {
    const { uuid, watchUrl } = await aMessage();
    const res = await request(t.app)
      .get(`/v1/messages/${uuid}?timeout=1&watch=${tokenOf(watchUrl)}`)
      .set("origin", "https://evil.example");
    expect(res.status).toBe(200);
    expect(res.headers["access-control-allow-origin"]).toBeUndefined();
  });

  it("when a listed origin calls any other /v1 route, then nothing answers CORS", async () => {
    const { uuid } = await aMessage();
    const calls = [
      request(t.app).get("/v1/messages").set("x-api-key", API_KEY),
      request(t.app).post("/v1/messages").set("x-api-key", API_KEY).send({ to: aPhoneNumber(), text: "1" }),
      request(t.app).get(`/messages/${uuid}`).set("x-api-key", API_KEY),
      request(t.app).options("/v1/messages").set("access-control-request-method", "POST"),
      request(t.app).options(`/messages/${uuid}`).set("access-control-request-method", "GET"),
    ];
    for (const call of calls) {
      const res = await call.set("origin", PAGE);
      expect(res.status, res.text).toBeLessThan(500);
      expect(res.headers["access-control-allow-origin"]).toBeUndefined();
    }
  });

  it("when CORS_ORIGINS is unset, then the watch routes answer no CORS either", async () => {
    const plain = await startTestApp({ LOG_LEVEL: "silent" });
    try {
      const sent = await request(plain.app).post("/v1/messages").send({ to: aPhoneNumber(), text: "1" });
      const res = await request(plain.app)
        .get(`/v1/messages/${sent.body.uuid}?timeout=1&watch=${tokenOf(sent.body.watchUrl)}`)
        .set("origin", PAGE);
      expect(res.status).toBe(200);
      expect(res.headers["access-control-allow-origin"]).toBeUndefined();
    } finally {
      await plain.close();
    }
  });
});
