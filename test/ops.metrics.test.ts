import request from "supertest";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { createApp } from "../src/app.ts";
import { createBetatelClient } from "../src/betatel/client.ts";
import { loadConfig } from "../src/config.ts";
import type { Database } from "../src/db/database.ts";
import { createLogger } from "../src/http/logging.ts";
import { createMetrics } from "../src/ops/metrics.ts";
import { openIsolatedDatabase } from "./support/isolated-database.ts";
import { listen, openEventStream } from "./support/live-fixtures.ts";
import { insertMessage } from "./support/message-rows.ts";
import { findPromtool, parseMetrics, promtoolProblems, sampleValue } from "./support/prometheus.ts";
import { aPhoneNumber, aUuid, startTestApp, type TestApp } from "./support/test-app.ts";

let t: TestApp;
beforeAll(async () => {
  t = await startTestApp();
});
afterAll(() => t.close());
beforeEach(() => t.betatel.reset());

const scrape = async (app = t.app) => {
  const res = await request(app).get("/metrics");
  expect(res.status).toBe(200);
  expect(res.headers["content-type"]).toMatch(/^text\/plain; version=0\.0\.4/);
  return parseMetrics(res.text);
};

describe("GET /metrics", () => {
  it("when a message is sent and read, then request, Betatel and route counters move by exactly that", async () => {
    const before = await scrape();
    const sent = await request(t.app).post("/v1/messages").send({ to: aPhoneNumber(), text: "Your code is 123456" });
    expect(sent.status).toBe(201);
    await request(t.app).get(`/v1/messages/${sent.body.uuid}`).expect(200);
    await request(t.app).get("/v1/messages/no-such-uuid").expect(404);
    await request(t.app).get("/nowhere/at/all").expect(404);
    const after = await scrape();

    const delta = (name: string, labels: Record<string, string>) =>
      sampleValue(after, name, labels) - sampleValue(before, name, labels);
    expect(delta("http_requests_total", { method: "POST", route: "/v1/messages", status: "201" })).toBe(1);
    // The route pattern, not the URL: a found and a missing message share one series each per status.
    expect(delta("http_requests_total", { method: "GET", route: "/v1/messages/:uuid", status: "200" })).toBe(1);
    expect(delta("http_requests_total", { method: "GET", route: "/v1/messages/:uuid", status: "404" })).toBe(1);
    expect(delta("http_requests_total", { method: "GET", route: "unmatched", status: "404" })).toBe(1);
    expect(delta("http_request_duration_seconds_count", { method: "POST", route: "/v1/messages", status: "201" })).toBe(
      1,
    );
    expect(after.some((sample) => sample.labels.route?.includes(sent.body.uuid))).toBe(false);
    expect(delta("otp_betatel_requests_total", { result: "ok" })).toBe(1);
    expect(delta("otp_betatel_request_duration_seconds_count", { result: "ok" })).toBe(1);
  });

  it("when Betatel refuses, then the failure kind is counted", async () => {
    const before = await scrape();
    t.betatel.reply({ status: 402, body: "Insufficient balance" });
    const res = await request(t.app).post("/v1/messages").send({ to: aPhoneNumber(), text: "Your code is 123456" });
    expect(res.status).toBe(502);
    const after = await scrape();
    const delta = (labels: Record<string, string>) =>
      sampleValue(after, "otp_betatel_requests_total", labels) -
      sampleValue(before, "otp_betatel_requests_total", labels);
    expect(delta({ result: "payment_required" })).toBe(1);
    expect(delta({ result: "ok" })).toBe(0);
  });

  it("when webhook events arrive, then they are counted by outcome and status", async () => {
    const sent = await request(t.app).post("/v1/messages").send({ to: aPhoneNumber(), text: "Your code is 123456" });
    const before = await scrape();
    const hook = await request(t.app)
      .post("/webhooks/betatel")
      .send([
        { uuid: sent.body.uuid, status: "delivered" },
        { uuid: sent.body.uuid, status: "DELIVERED" },
        { uuid: sent.body.uuid, status: "SENT" },
        { uuid: sent.body.uuid, status: "NOT-A-STATUS" },
      ]);
    expect(hook.status).toBe(200);
    const after = await scrape();
    const delta = (labels: Record<string, string>) =>
      sampleValue(after, "otp_webhook_events_total", labels) - sampleValue(before, "otp_webhook_events_total", labels);
    expect(delta({ outcome: "applied", status: "DELIVERED" })).toBe(1);
    expect(delta({ outcome: "duplicate", status: "DELIVERED" })).toBe(1);
    expect(delta({ outcome: "stale", status: "SENT" })).toBe(1);
    expect(delta({ outcome: "invalid", status: "unknown" })).toBe(1);
  });

  it("serves the default process metrics", async () => {
    const samples = await scrape();
    expect(sampleValue(samples, "process_cpu_user_seconds_total")).toBeGreaterThan(0);
    expect(samples.some((sample) => sample.name === "nodejs_heap_size_used_bytes")).toBe(true);
  });

  it("when METRICS_TOKEN is set, then a scrape needs it as a bearer token", async () => {
    const guarded = await startTestApp({ METRICS_TOKEN: "scrape-me" });
    try {
      expect((await request(guarded.app).get("/metrics")).status).toBe(401);
      expect((await request(guarded.app).get("/metrics").set("authorization", "Bearer wrong")).status).toBe(401);
      const ok = await request(guarded.app).get("/metrics").set("authorization", "Bearer scrape-me");
      expect(ok.status).toBe(200);
      expect(ok.text).toContain("http_requests_total");
    } finally {
      await guarded.close();
    }
  });
});

describe("GET /metrics: label values and format", () => {
  /** `path` with each letter's case chosen by the bits of `seed`: distinct seeds, distinct spellings. */
  const caseVariant = (path: string, seed: number) =>
    [...path].map((char, i) => ((seed >> (i % 16)) & 1 ? char.toUpperCase() : char.toLowerCase())).join("");

  it("when callers vary the letter case of the path, then the route label stays the mounted pattern", async () => {
    const before = await scrape();
    const spellings = new Set(Array.from({ length: 64 }, (_, i) => caseVariant("/webhooks/betatel", i * 97 + 1)));
    for (const path of spellings) {
      expect((await request(t.app).post(path).send({})).status).toBe(400);
    }
    expect((await request(t.app).get(`/V1/Messages/${aUuid()}`)).status).toBe(404);
    const after = await scrape();

    const delta = (labels: Record<string, string>) =>
      sampleValue(after, "http_requests_total", labels) - sampleValue(before, "http_requests_total", labels);
    expect(delta({ method: "POST", route: "/webhooks/betatel", status: "400" })).toBe(spellings.size);
    expect(delta({ method: "GET", route: "/v1/messages/:uuid", status: "404" })).toBe(1);
    const routes = new Set(after.filter((s) => s.name === "http_requests_total").map((s) => s.labels.route));
    for (const route of routes) expect(route).toBe(route?.toLowerCase());
    expect(routes.size).toBeLessThan(12);
  });

  it("when an event stream is opened and left by its client, then it is counted under its route", async () => {
    const sent = await request(t.app).post("/v1/messages").send({ to: aPhoneNumber(), text: "Your code is 123456" });
    const server = await listen(t.app);
    try {
      const before = await scrape();
      const stream = await openEventStream(`${server.url}/v1/messages/${sent.body.uuid}/stream`);
      expect(stream.status).toBe(200);
      await stream.event(0);
      stream.close();
      const labels = { method: "GET", route: "/v1/messages/:uuid/stream", status: "200" };
      let after = await scrape();
      for (
        let i = 0;
        i < 50 &&
        sampleValue(after, "http_requests_total", labels) === sampleValue(before, "http_requests_total", labels);
        i++
      ) {
        await new Promise((resolve) => setTimeout(resolve, 20));
        after = await scrape();
      }
      expect(
        sampleValue(after, "http_requests_total", labels) - sampleValue(before, "http_requests_total", labels),
      ).toBe(1);
      expect(
        sampleValue(after, "http_request_duration_seconds_count", labels) -
          sampleValue(before, "http_request_duration_seconds_count", labels),
      ).toBe(1);
    } finally {
      await server.close();
    }
  });

  const promtool = findPromtool();
  it.skipIf(!promtool)("when promtool lints a real scrape, then it finds nothing to complain about", async () => {
    // Traffic first, so every family has samples (histograms, labelled counters, the status gauge).
    await request(t.app).post("/v1/messages").send({ to: aPhoneNumber(), text: "Your code is 123456" });
    await request(t.app).get("/nowhere");
    const res = await request(t.app).get("/metrics");
    expect(res.text).toContain("http_request_duration_seconds_bucket");
    expect(promtoolProblems(promtool as string, res.text)).toEqual([]);
  });
});

describe("otp_messages gauge", () => {
  let db: Database;
  beforeAll(async () => {
    db = await openIsolatedDatabase(2);
  });
  afterAll(() => db.close());

  const appWith = (statusCacheMs: number) =>
    createApp({
      config: loadConfig({ NODE_ENV: "test", LOG_LEVEL: "silent" }),
      db,
      betatel: createBetatelClient({ baseUrl: "http://127.0.0.1:9", apiKey: "", accountId: "", timeoutMs: 100 }),
      logger: createLogger("silent"),
      metrics: createMetrics({ pool: db.pool, statusCacheMs }),
    });

  it("counts the rows per current status, every status present, and reuses a count within the cache time", async () => {
    const app = appWith(60_000);
    await insertMessage(db.pool, { status: "PENDING" });
    await insertMessage(db.pool, { status: "PENDING" });
    await insertMessage(db.pool, { status: "READ" });

    const first = await scrape(app);
    expect(sampleValue(first, "otp_messages", { status: "PENDING" })).toBe(2);
    expect(sampleValue(first, "otp_messages", { status: "READ" })).toBe(1);
    expect(first.filter((sample) => sample.name === "otp_messages").map((sample) => sample.labels.status)).toEqual([
      "PENDING",
      "SENT",
      "DELIVERED",
      "READ",
      "FAILED",
      "EXPIRED",
    ]);
    expect(sampleValue(first, "otp_messages", { status: "FAILED" })).toBe(0);

    await insertMessage(db.pool, { status: "FAILED" });
    const cached = await scrape(app);
    expect(sampleValue(cached, "otp_messages", { status: "FAILED" })).toBe(0);

    const fresh = await scrape(appWith(0));
    expect(sampleValue(fresh, "otp_messages", { status: "FAILED" })).toBe(1);
    expect(sampleValue(fresh, "otp_messages", { status: "PENDING" })).toBe(2);
  });
});
