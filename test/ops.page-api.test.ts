import request from "supertest";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../src/config.ts";
import type { Database } from "../src/db/database.ts";
import { newSession } from "../src/ops/page/access.ts";
import { OVERVIEW_QUERIES } from "../src/ops/page/queries.ts";
import { openIsolatedDatabase } from "./support/isolated-database.ts";
import { seedOpsFeatures, seedOpsHistory } from "./support/ops-seed.ts";
import { startTestApp, type TestApp } from "./support/test-app.ts";

// The ops page's access rules and JSON, through HTTP; its queries' plans on a realistically sized table.

describe("the ops page's access", () => {
  let open: TestApp;
  let locked: TestApp;
  let production: TestApp;
  const PRODUCTION = {
    NODE_ENV: "production",
    API_KEYS: "k",
    WEBHOOK_SECRET: "s",
    VERIFY_SECRET: "ops-page-test-verify-secret-0123456789",
    WATCH_SECRET: "ops-page-test-watch-secret-01234567890",
    // Checked by the configuration only: the test app runs on the test's own database.
    DATABASE_URL: "postgresql://unused@127.0.0.1/unused",
  };
  beforeAll(async () => {
    open = await startTestApp({ NODE_ENV: "development" });
    locked = await startTestApp(PRODUCTION);
    production = await startTestApp({ ...PRODUCTION, OPS_TOKEN: "production-ops-token-42" });
  });
  afterAll(async () => {
    await open.close();
    await locked.close();
    await production.close();
  });

  it("when OPS_TOKEN is unset outside production, then the page, its files and its JSON are open", async () => {
    const page = await request(open.app).get("/ops");
    expect(page.status).toBe(200);
    expect(page.text).toContain('<script src="/ops/assets/ops.js" defer></script>');
    const chart = await request(open.app).get("/ops/vendor/uPlot.iife.min.js");
    expect(chart.status).toBe(200);
    expect(chart.headers["content-type"]).toMatch(/javascript/);
    const api = await request(open.app).get("/ops/api/overview");
    expect(api.status).toBe(200);
    expect(api.body).toMatchObject({ window: "24h", bucketSeconds: 3600, totals: { all: expect.any(Number) } });
  });

  it("when OPS_TOKEN is unset in production, then the page and its JSON answer 401 and no token signs in", async () => {
    const page = await request(locked.app).get("/ops");
    expect(page.status).toBe(401);
    expect(page.text).toContain("OPS_TOKEN is not set");
    const api = await request(locked.app).get("/ops/api/overview");
    expect(api.status).toBe(401);
    expect(api.body.code).toBe("unauthorized");
    const login = await request(locked.app).post("/ops/login").type("form").send({ token: "" });
    expect(login.status).toBe(401);
    expect(login.headers["set-cookie"]).toBeUndefined();
  });

  it("when OPS_TOKEN is set in production, then signing in sets a Secure cookie that opens the JSON", async () => {
    const login = await request(production.app)
      .post("/ops/login")
      .type("form")
      .send({ token: "production-ops-token-42" });
    expect(login.status).toBe(303);
    const cookie = String(login.headers["set-cookie"]);
    expect(cookie).toMatch(/; HttpOnly; Secure; SameSite=Strict$/);
    const api = await request(production.app)
      .get("/ops/api/overview")
      .set("cookie", cookie.split(";")[0] as string);
    expect(api.status).toBe(200);
    expect((await request(production.app).get("/ops/api/overview")).status).toBe(401);
    // A session signed with the right token but 12 hours old has ended.
    const ended = newSession("production-ops-token-42", Date.now() - 12 * 3_600_000 - 1000);
    expect((await request(production.app).get("/ops/api/overview").set("cookie", `ops_session=${ended}`)).status).toBe(
      401,
    );
  });

  it("when the window is 1h, 7d or something else, then the buckets follow it or a 400 problem names it", async () => {
    const hour = await request(open.app).get("/ops/api/overview?window=1h");
    expect(hour.body).toMatchObject({ window: "1h", bucketSeconds: 300 });
    expect(hour.body.buckets.length).toBeGreaterThanOrEqual(12);
    const week = await request(open.app).get("/ops/api/overview?window=7d");
    expect(week.body).toMatchObject({ window: "7d", bucketSeconds: 3600 });
    expect(week.body.buckets.length).toBeGreaterThanOrEqual(168);
    for (const bad of ["?window=2h", "?window=24h&window=7d"]) {
      const res = await request(open.app).get(`/ops/api/overview${bad}`);
      expect(res.status).toBe(400);
      expect(res.headers["content-type"]).toMatch(/^application\/problem\+json/);
      expect(res.body.errors).toEqual([{ path: "window", message: "must be one of 1h, 24h, 7d" }]);
    }
  });

  it("when the team is not a team name or is given twice, then a 400 problem names it; an unknown team reads zeros", async () => {
    for (const bad of ["?team=%20growth", "?team=a%27%3B--", `?team=${"x".repeat(65)}`, "?team=a&team=b"]) {
      const res = await request(open.app).get(`/ops/api/overview${bad}`);
      expect(res.status, bad).toBe(400);
      expect(res.headers["content-type"]).toMatch(/^application\/problem\+json/);
      expect(res.body.errors).toEqual([
        { path: "team", message: "must be 1 to 64 letters, digits, dots, dashes or underscores" },
      ]);
    }
    const nobody = await request(open.app).get("/ops/api/overview?team=no-such-team");
    expect(nobody.status).toBe(200);
    expect(nobody.body).toMatchObject({
      team: "no-such-team",
      totals: { all: 0 },
      callbacks: { pending: 0, endpoints: 0 },
      verifications: { started: 0 },
    });
    const all = await request(open.app).get("/ops/api/overview?team=");
    expect(all.body.team).toBeNull();
  });

  it("when a file that is not the page's is asked for, or the sign-in form is oversized, then a 4xx problem answers", async () => {
    for (const path of ["/ops/assets/nope.js", "/ops/assets/%2e%2e/routes.ts", "/ops/vendor/package.json"]) {
      const res = await request(open.app).get(path);
      expect(res.status, path).toBe(404);
      expect(res.headers["content-type"]).toMatch(/^application\/problem\+json/);
    }
    const big = await request(open.app)
      .post("/ops/login")
      .type("form")
      .send(`token=${"x".repeat(5000)}`);
    expect(big.status).toBe(413);
  });

  it("when an address tries the sign-in an 11th time in a minute, then 429: the form again for a browser, a problem for others", async () => {
    const guessing = await startTestApp({ OPS_TOKEN: "guessing-ops-token-1234" });
    try {
      const attempt = (accept: string) =>
        request(guessing.app).post("/ops/login").set("Accept", accept).type("form").send({ token: "wrong" });
      for (let i = 0; i < 10; i++) expect((await attempt("*/*")).status).toBe(401);

      const api = await attempt("application/json");
      expect(api.status).toBe(429);
      expect(api.headers["content-type"]).toMatch(/^application\/problem\+json/);
      expect(api.body).toMatchObject({ status: 429, code: "too_many_sign_ins" });
      expect(Number(api.headers["retry-after"])).toBeGreaterThan(0);
      const browser = await attempt("text/html,application/xhtml+xml,*/*;q=0.8");
      expect(browser.status).toBe(429);
      expect(browser.headers["content-type"]).toMatch(/^text\/html/);
      expect(browser.text).toContain("Too many sign-in attempts");
    } finally {
      await guessing.close();
    }
  });

  it("when OPS_TOKEN is shorter than 16 characters, then the configuration is refused naming it", () => {
    expect(() => loadConfig({ OPS_TOKEN: "short" })).toThrow(ConfigError);
    expect(() => loadConfig({ OPS_TOKEN: "short" })).toThrow(/OPS_TOKEN: must be at least 16 characters/);
  });
});

describe("the ops page's query plans", () => {
  // A database of its own: 50,000 messages over 30 days (about 1,700 in the last 24 hours), their events,
  // callback deliveries and verifications, ANALYZEd, so the planner sees a table where the window is a small slice.
  let db: Database;
  beforeAll(async () => {
    db = await openIsolatedDatabase(1);
    await seedOpsHistory(db.pool, { count: 50_000, spanHours: 30 * 24 });
    // Three deliveries per message (pending only in the last 2 hours: the backlog is a small slice) and a
    // verification for every 5th message.
    await seedOpsFeatures(db.pool);
    for (const table of ["messages", "message_events", "callback_deliveries", "verifications"]) {
      await db.pool.query(`ANALYZE ${table}`);
    }
  });
  afterAll(() => db.close());

  const explain = async (text: string, values: unknown[]) =>
    (await db.pool.query(`EXPLAIN ${text}`, values)).rows.map((row) => row["QUERY PLAN"]).join("\n");
  const since = () => new Date(Date.now() - 86_400_000);

  it.each([
    ["WINDOW_STATS", [since(), null, 3600]],
    ["WINDOW_STATS", [since(), "billing", 3600]],
    ["TOP_FAILURES", [since(), null]],
    ["TOP_FAILURES", [since(), "growth"]],
    ["STUCK_SUMMARY", [300, null]],
    ["STUCK_SUMMARY", [300, "billing"]],
    ["TEAMS", []],
    ["VERIFICATION_FUNNEL", [since(), null]],
    ["VERIFICATION_FUNNEL", [since(), "growth"]],
  ] as const)("%s (%j) reads the window through an index, never the whole table", async (name, values) => {
    const plan = await explain(OVERVIEW_QUERIES[name], [...values]);
    expect(plan).toMatch(/Index (Only )?Scan|Bitmap Index Scan/);
    expect(plan).not.toMatch(/Seq Scan on (messages|verifications)/);
  });

  it.each([
    ["CALLBACK_BACKLOG", [null]],
    ["CALLBACK_BACKLOG", ["growth"]],
    ["CALLBACK_WINDOW", [since(), null]],
    ["CALLBACK_WINDOW", [since(), "growth"]],
  ] as const)("%s (%j) reads the deliveries through an index, never the whole table", async (name, values) => {
    const plan = await explain(OVERVIEW_QUERIES[name], [...values]);
    expect(plan).toMatch(/Index (Only )?Scan|Bitmap Index Scan/);
    expect(plan).not.toMatch(/Seq Scan on callback_deliveries/);
  });
});
