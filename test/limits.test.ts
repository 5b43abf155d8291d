import request from "supertest";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseMetrics, sampleValue } from "./support/prometheus.ts";
import { createScratchDatabase, openDatabaseAt, type ScratchDatabase } from "./support/scratch-database.ts";
import { spawnServer } from "./support/spawn-server.ts";
import { aPhoneNumber, startTestAppOn, type TestApp } from "./support/test-app.ts";

// Two instances of the service on one database of their own (the limits count every send to it).
const LIMITS = { API_KEYS: "growth:limits-a,billing:limits-b", RECIPIENT_LIMITS: "5/10m,20/24h" };
let scratch: ScratchDatabase;
let one: TestApp;
let two: TestApp;
beforeAll(async () => {
  scratch = await createScratchDatabase("limits");
  one = await startTestAppOn(await openDatabaseAt(scratch.url, 10), { ...LIMITS, LOG_LEVEL: "info" });
  two = await startTestAppOn(await openDatabaseAt(scratch.url, 10), LIMITS);
}, 30_000);
afterAll(async () => {
  await one?.close();
  await two?.close();
  await scratch?.drop();
});

const send = (app: TestApp, to: string, key = "limits-a") =>
  request(app.app).post("/v1/messages").set("x-api-key", key).send({ to, text: "Your code is 123456" });
const betatelCalls = () => one.betatel.requests.length + two.betatel.requests.length;
const reset = () => {
  one.betatel.reset();
  two.betatel.reset();
};

/** Writes earlier sends to `to`, `agoMs` before now, as if they had been sent then. */
const sentBefore = (to: string, agoMs: number[]) =>
  scratch.query(
    `INSERT INTO recipient_sends ("to", team, sent_at)
     SELECT $1, 'growth', now() - ago * interval '1 millisecond' FROM unnest($2::int[]) AS ago`,
    [to, agoMs],
  );

describe("per-recipient limit (RECIPIENT_LIMITS)", () => {
  it("when 30 sends to one number arrive at once over two instances and two teams, then exactly 5 reach Betatel", async () => {
    reset();
    const to = aPhoneNumber();

    const answers = await Promise.all(
      Array.from({ length: 30 }, (_, i) => send(i % 2 ? one : two, to, i % 3 ? "limits-a" : "limits-b")),
    );

    const statuses = answers.map((res) => res.status);
    expect(statuses.filter((status) => status === 201)).toHaveLength(5);
    expect(statuses.filter((status) => status === 429)).toHaveLength(25);
    expect(betatelCalls()).toBe(5);
    for (const refused of answers.filter((res) => res.status === 429)) {
      expect(refused.headers["content-type"]).toMatch(/^application\/problem\+json/);
      expect(refused.body.code).toBe("recipient_rate_limited");
      // The first of the five sends leaves the 10-minute window in (almost exactly) 10 minutes.
      expect(Number(refused.headers["retry-after"])).toBeGreaterThanOrEqual(595);
      expect(Number(refused.headers["retry-after"])).toBeLessThanOrEqual(600);
    }
    const [count] = await scratch.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM recipient_sends WHERE "to" = $1`,
      [to],
    );
    expect(count?.n).toBe(5);
  }, 30_000);

  it("when the window is full of older sends, then Retry-After is when the oldest of them leaves it", async () => {
    reset();
    const to = aPhoneNumber();
    await sentBefore(to, [570_000, 400_000, 300_000, 200_000, 100_000]); // the oldest leaves in 30 s

    const res = await send(one, to);

    expect(res.status).toBe(429);
    expect(Number(res.headers["retry-after"])).toBeGreaterThanOrEqual(28);
    expect(Number(res.headers["retry-after"])).toBeLessThanOrEqual(30);
    expect(betatelCalls()).toBe(0);
  });

  it("when the 24-hour limit is reached but not the 10-minute one, then Retry-After is when the day's oldest leaves", async () => {
    reset();
    const to = aPhoneNumber();
    const hour = 3_600_000;
    // 20 sends over the last 23 hours, none in the last 10 minutes: the oldest leaves the day in 1 hour.
    await sentBefore(
      to,
      Array.from({ length: 20 }, (_, i) => 23 * hour - i * hour + (i === 19 ? -hour / 2 : 0)),
    );

    const res = await send(two, to);

    expect(res.status).toBe(429);
    expect(Number(res.headers["retry-after"])).toBeGreaterThanOrEqual(3598);
    expect(Number(res.headers["retry-after"])).toBeLessThanOrEqual(3600);
  });

  it("when sends fell out of the window, then the number may receive again", async () => {
    reset();
    const to = aPhoneNumber();
    await sentBefore(to, [700_000, 650_000, 620_000, 610_000, 601_000]); // all older than 10 minutes

    expect((await send(one, to)).status).toBe(201);
    expect(betatelCalls()).toBe(1);
  });

  it("when Betatel refused the sends (400), then they still count: the attempts are what a pumping bot makes", async () => {
    reset();
    const to = aPhoneNumber();
    one.betatel.always({ status: 400, body: { message: "Number not on WhatsApp" } });

    const statuses: number[] = [];
    for (let i = 0; i < 6; i++) statuses.push((await send(one, to)).status);

    expect(statuses).toEqual([422, 422, 422, 422, 422, 429]);
    expect(one.betatel.requests).toHaveLength(5);
  });

  it("when a send is refused, then the log has the masked number (never the number) and the metric counts it", async () => {
    reset();
    const to = aPhoneNumber();
    await sentBefore(to, [1_000, 2_000, 3_000, 4_000, 5_000]);
    const before = one.logs.lines.length;

    expect((await send(one, to)).status).toBe(429);

    const lines = one.logs.lines.slice(before).join("\n");
    expect(lines).toContain('"msg":"send refused by a limit"');
    expect(lines).toContain(`"to":"387${"*".repeat(to.length - 5)}${to.slice(-2)}"`);
    expect(lines).not.toContain(to);
    const metrics = parseMetrics((await request(one.app).get("/metrics")).text);
    expect(sampleValue(metrics, "otp_send_refusals_total", { reason: "recipient", team: "growth" })).toBeGreaterThan(0);
  });
});

describe("countries (ALLOWED_COUNTRIES)", () => {
  let app: TestApp;
  beforeAll(async () => {
    app = await startTestAppOn(await openDatabaseAt(scratch.url), { ALLOWED_COUNTRIES: "HR,RS" });
  });
  afterAll(() => app.close());

  it("when the number is of another country, then 422 country_not_allowed, logged masked, and Betatel is not called", async () => {
    const to = aPhoneNumber(); // Bosnia and Herzegovina

    const res = await request(app.app).post("/v1/messages").send({ to, text: "Your code is 1" });

    expect(res.status).toBe(422);
    expect(res.body).toMatchObject({ code: "country_not_allowed", status: 422 });
    expect(app.betatel.requests).toHaveLength(0);
    expect(app.logs.text).not.toContain(to);
    const metrics = parseMetrics((await request(app.app).get("/metrics")).text);
    expect(sampleValue(metrics, "otp_send_refusals_total", { reason: "country", team: "default" })).toBe(1);
  });

  it("when the number is of an allowed country, then it is sent", async () => {
    const res = await request(app.app).post("/v1/messages").send({ to: "+385 91 234 5678", text: "Your code is 2" });

    expect(res.status).toBe(201);
    expect(app.betatel.requests).toHaveLength(1);
  });
});

describe("per-key rate (RATE_LIMIT_PER_MINUTE), counted over all instances", () => {
  it("when one key sends 10 at once over two instances with a limit of 4, then exactly 4 pass and another key is unaffected", async () => {
    const env = { API_KEYS: "growth:rate-a,billing:rate-b", RECIPIENT_LIMITS: "off", RATE_LIMIT_PER_MINUTE: "4" };
    const a = await startTestAppOn(await openDatabaseAt(scratch.url), env);
    const b = await startTestAppOn(await openDatabaseAt(scratch.url), env);
    try {
      const answers = await Promise.all(
        Array.from({ length: 10 }, (_, i) => send(i % 2 ? a : b, aPhoneNumber(), "rate-a")),
      );

      const statuses = answers.map((res) => res.status);
      expect(statuses.filter((status) => status === 201)).toHaveLength(4);
      expect(statuses.filter((status) => status === 429)).toHaveLength(6);
      const refused = answers.find((res) => res.status === 429);
      expect(refused?.body.code).toBe("rate_limited");
      expect(Number(refused?.headers["retry-after"])).toBeGreaterThan(0);
      expect(a.betatel.requests.length + b.betatel.requests.length).toBe(4);
      expect((await send(a, aPhoneNumber(), "rate-b")).status).toBe(201);
      const metrics = parseMetrics((await request(a.app).get("/metrics")).text);
      const metricsB = parseMetrics((await request(b.app).get("/metrics")).text);
      expect(
        sampleValue(metrics, "otp_send_refusals_total", { reason: "key", team: "growth" }) +
          sampleValue(metricsB, "otp_send_refusals_total", { reason: "key", team: "growth" }),
      ).toBe(6);
    } finally {
      await a.close();
      await b.close();
    }
  });
});

describe("sandbox mode", () => {
  it("when the service runs without Betatel credentials, then the recipient limit still applies", async () => {
    const server = await spawnServer({
      DATABASE_URL: scratch.url,
      RECIPIENT_LIMITS: "2/1h",
      SANDBOX_STEP_MS: "60000",
      RECONCILE_INTERVAL_MS: "0",
    });
    try {
      const to = aPhoneNumber();
      const statuses: number[] = [];
      for (let i = 0; i < 3; i++) {
        const res = await fetch(`${server.url}/v1/messages`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ to, text: "Your code is 3" }),
        });
        statuses.push(res.status);
      }
      expect(statuses).toEqual([201, 201, 429]);
    } finally {
      server.kill();
      await server.exited;
    }
  }, 30_000);
});
