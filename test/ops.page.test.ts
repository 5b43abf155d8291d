/// <reference lib="dom" />
// (DOM types for the callbacks that run in the browser page.)
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { launchChromium } from "./support/chromium.ts";
import { openIsolatedDatabase } from "./support/isolated-database.ts";
import { insertMessage } from "./support/message-rows.ts";
import { seedOpsFeatures, seedOpsHistory } from "./support/ops-seed.ts";
import { aPhoneNumber, aUuid, startTestAppOn, type TestApp } from "./support/test-app.ts";

// The ops page in a real browser (Debian's Chromium) against the real app on a database of its own, so the
// numbers it shows can be checked against SQL over the whole table.
const OPS_TOKEN = "browser-test-ops-token-0123456789";
const STUCK_AFTER_MS = 10 * 60_000;

let t: TestApp;
let server: Server;
let base: string;
let browser: Browser;
let page: Page;
const consoleErrors: string[] = [];

beforeAll(async () => {
  t = await startTestAppOn(await openIsolatedDatabase(2), {
    OPS_TOKEN,
    RECONCILE_AFTER_MS: String(STUCK_AFTER_MS),
  });
  // 240 messages over the last 20 hours (four PENDING/SENT among them are stuck), plus what the window leaves out.
  await seedOpsHistory(t.db.pool, { count: 240, spanHours: 20 });
  // Their callback deliveries (four endpoints, two failing or disabled) and verifications, in both teams.
  await seedOpsFeatures(t.db.pool);
  const dayAndAHalfAgo = new Date(Date.now() - 30 * 3_600_000);
  for (const status of ["READ", "FAILED", "DELIVERED"] as const) {
    await insertMessage(t.db.pool, { status, createdAt: dayAndAHalfAgo, errorCode: status === "FAILED" ? "1" : null });
  }
  await t.db.pool.query(
    `UPDATE messages SET check_count = 2, last_checked_at = now() - interval '1 minute',
       next_check_at = now() + interval '4 minutes'
     WHERE uuid IN (SELECT uuid FROM messages WHERE status IN ('PENDING', 'SENT') AND created_at < now() - interval '10 minutes' LIMIT 3)`,
  );
  // Two statuses that arrived before their message.
  for (const status of ["SENT", "DELIVERED"]) {
    await t.db.pool.query(
      `INSERT INTO message_events (uuid, status, outcome, occurred_at, source) VALUES ($1, $2, 'buffered', now(), 'webhook')`,
      [aUuid(), status],
    );
  }
  server = createServer(t.app).listen(0, "127.0.0.1");
  await new Promise((resolve) => server.once("listening", resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  browser = await launchChromium();
});

afterAll(async () => {
  await browser?.close();
  await new Promise((resolve) => server?.close(resolve));
  await t?.close();
});

const sql = async <Row>(text: string, values: unknown[] = []) => (await t.db.pool.query(text, values)).rows as Row[];
const text = async (selector: string) => ((await page.textContent(selector)) ?? "").trim();
const number = async (selector: string) => Number((await text(selector)).replaceAll(",", ""));
// The page's duration format, to compare a number of seconds SQL computed with what the page prints.
const duration = (s: number) =>
  s < 60 ? `${s.toFixed(1)} s` : s < 3600 ? `${(s / 60).toFixed(1)} min` : `${(s / 3600).toFixed(1)} h`;

/** Waits until the page has drawn data read after `after` (it reads again every second here). */
async function freshData(after = new Date()) {
  await page.waitForFunction(
    (since) => document.body.dataset.readAt !== undefined && document.body.dataset.readAt > since,
    after.toISOString(),
  );
}

describe("the ops page without a session", () => {
  it("answers 401: the page with a sign-in form, its JSON as a problem, a wrong token and a forged cookie too", async () => {
    const pageRes = await fetch(`${base}/ops`);
    expect(pageRes.status).toBe(401);
    expect(await pageRes.text()).toMatch(/<form method="post" action="\/ops\/login">/);

    const api = await fetch(`${base}/ops/api/overview`);
    expect(api.status).toBe(401);
    expect(api.headers.get("content-type")).toMatch(/^application\/problem\+json/);
    expect(await api.json()).toMatchObject({ status: 401, code: "unauthorized" });

    const wrong = await fetch(`${base}/ops/login`, { method: "POST", body: new URLSearchParams({ token: "nope" }) });
    expect(wrong.status).toBe(401);
    expect(wrong.headers.get("set-cookie")).toBeNull();
    // Not a browser: the refusal is a problem, not the form.
    expect(wrong.headers.get("content-type")).toMatch(/^application\/problem\+json/);
    expect(await wrong.json()).toMatchObject({ status: 401, code: "unauthorized" });
    const wrongInBrowser = await fetch(`${base}/ops/login`, {
      method: "POST",
      headers: { accept: "text/html,application/xhtml+xml,*/*;q=0.8" },
      body: new URLSearchParams({ token: "nope" }),
    });
    expect(wrongInBrowser.status).toBe(401);
    expect(await wrongInBrowser.text()).toContain("That token is not right");

    const expires = Date.now() + 3_600_000;
    const forged = await fetch(`${base}/ops/api/overview`, {
      headers: { cookie: `ops_session=${expires}.${"A".repeat(43)}` },
    });
    expect(forged.status).toBe(401);
    const rawToken = await fetch(`${base}/ops/api/overview`, { headers: { cookie: `ops_session=${OPS_TOKEN}` } });
    expect(rawToken.status).toBe(401);
  });

  it("signs in with the token: a 303 to /ops and a session cookie that is HttpOnly, SameSite=Strict and not the token", async () => {
    const res = await fetch(`${base}/ops/login`, {
      method: "POST",
      body: new URLSearchParams({ token: OPS_TOKEN }),
      redirect: "manual",
    });
    expect(res.status).toBe(303);
    expect(res.headers.get("location")).toBe("/ops");
    const cookie = res.headers.get("set-cookie") ?? "";
    expect(cookie).toMatch(
      /^ops_session=\d+\.[\w-]{43}; Max-Age=43200; Path=\/ops; Expires=.*; HttpOnly; SameSite=Strict$/,
    );
    expect(cookie).not.toContain(OPS_TOKEN);
    const session = cookie.split(";")[0] as string;
    expect((await fetch(`${base}/ops/api/overview`, { headers: { cookie: session } })).status).toBe(200);
    const csp = (await fetch(`${base}/ops`, { headers: { cookie: session } })).headers.get("content-security-policy");
    expect(csp).toContain("script-src 'self'");
    expect(csp).not.toContain("unsafe-inline");
  });
});

describe("the ops page in Chromium", () => {
  beforeAll(async () => {
    page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    await page.goto(`${base}/ops?refresh=1`);
    await page.fill("input[name=token]", OPS_TOKEN);
    await Promise.all([page.waitForURL(`${base}/ops`), page.click("button[type=submit]")]);
    // From here on, any error the dashboard logs (script errors, CSP violations, failed loads) fails the test.
    page.on("console", (message) => {
      if (message.type() === "error") consoleErrors.push(message.text());
    });
    page.on("pageerror", (error) => consoleErrors.push(error.message));
    await page.goto(`${base}/ops?refresh=1`);
    await freshData(new Date(0));
  });

  it("loads with no console errors and every chart draws marks", async () => {
    await freshData();
    expect(consoleErrors).toEqual([]);
    const charts = await page.$$eval(".chart", (elements) =>
      elements.map((el) => {
        const canvas = el.querySelector("canvas") as HTMLCanvasElement;
        const pixels = (canvas.getContext("2d") as CanvasRenderingContext2D).getImageData(
          0,
          0,
          canvas.width,
          canvas.height,
        ).data;
        let coloured = 0; // axes and grid are grey: coloured pixels are the data's bars and lines
        for (let i = 0; i < pixels.length; i += 4) {
          const [r, g, b, a] = [pixels[i] ?? 0, pixels[i + 1] ?? 0, pixels[i + 2] ?? 0, pixels[i + 3] ?? 0];
          if (a > 0 && Math.max(r, g, b) - Math.min(r, g, b) > 60) coloured++;
        }
        return { id: el.id, marks: Number(el.getAttribute("data-marks")), coloured };
      }),
    );
    expect(charts.map((c) => c.id)).toEqual([
      "chart-status",
      "chart-latency-sent",
      "chart-latency-delivered",
      "chart-latency-read",
    ]);
    for (const chart of charts) {
      expect(chart.marks, chart.id).toBeGreaterThan(0);
      expect(chart.coloured, chart.id).toBeGreaterThan(200);
    }
    await page.screenshot({ path: path.join(tmpdir(), "ops-page.test.png"), fullPage: true });
  });

  it("shows the numbers SQL computes: per status (as the dashboards' view has them), latency, failures, stuck, buffered", async () => {
    const byStatus = await sql<{ status: string; messages: string }>(
      `SELECT status, sum(messages) AS messages FROM ops_messages_per_hour
       WHERE hour >= date_trunc('hour', now() - interval '24 hours', 'UTC') GROUP BY status`,
    );
    const latency = await sql<{ p: number[] }>(
      `SELECT percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY extract(epoch FROM delivered_at - created_at)) AS p
       FROM messages WHERE created_at >= now() - interval '24 hours' AND delivered_at IS NOT NULL`,
    );
    const failures = await sql<{ error_code: string; error_message: string; messages: string }>(
      `SELECT error_code, error_message, count(*) AS messages FROM messages
       WHERE status = 'FAILED' AND created_at >= now() - interval '24 hours'
       GROUP BY 1, 2 ORDER BY 3 DESC, 1`,
    );
    const [stuck] = await sql<{ messages: string; checked: string }>(
      `SELECT count(*) AS messages, count(*) FILTER (WHERE m.check_count > 0) AS checked
       FROM ops_stuck_messages s JOIN messages m USING (uuid) WHERE s.age > interval '10 minutes'`,
    );
    const [buffered] = await sql<{ events: string }>(
      "SELECT count(*) AS events FROM message_events WHERE outcome = 'buffered'",
    );
    await freshData();

    const expected = Object.fromEntries(byStatus.map((r) => [r.status, Number(r.messages)]));
    for (const status of ["PENDING", "SENT", "DELIVERED", "READ", "FAILED", "EXPIRED"]) {
      expect(await number(`#total-${status}`), status).toBe(expected[status] ?? 0);
    }
    expect(await number("#total-all")).toBe(240);
    const [p50, p95, p99] = latency[0]?.p ?? [];
    expect([
      await text("#latency-delivered-p50"),
      await text("#latency-delivered-p95"),
      await text("#latency-delivered-p99"),
    ]).toEqual([duration(p50 as number), duration(p95 as number), duration(p99 as number)]);

    const rows = await page.$$eval("#failures tbody tr", (trs) =>
      trs.map((tr) => Array.from(tr.querySelectorAll("td")).map((td) => td.textContent)),
    );
    expect(rows.map(([code, message, messages]) => [code, message, messages])).toEqual(
      failures.map((f) => [f.error_code, f.error_message, f.messages]),
    );
    const sampleUuids = rows.map((row) => row[3]);
    const samples = await t.db.pool.query(
      "SELECT error_code FROM messages WHERE uuid = ANY($1) AND status = 'FAILED'",
      [sampleUuids],
    );
    expect(samples.rowCount).toBe(failures.length);

    expect(await number("#stuck-count")).toBe(Number(stuck?.messages));
    expect(await number("#stuck-checked")).toBe(3);
    expect(Number(stuck?.checked)).toBe(3);
    expect(await number("#buffered-count")).toBe(Number(buffered?.events));
    expect(await number("#buffered-count")).toBe(2);
  });

  it("masks phone numbers", async () => {
    const shown = await page.$$eval("#stuck tbody tr td:nth-child(2)", (tds) => tds.map((td) => td.textContent ?? ""));
    expect(shown.length).toBeGreaterThan(0);
    for (const to of shown) expect(to).toMatch(/^387\*+\d\d$/);
    const numbers = await sql<{ to: string }>(`SELECT "to" FROM ops_stuck_messages`);
    const html = await page.content();
    for (const { to } of numbers) expect(html).not.toContain(to);
  });

  it("switches to the last hour in 5-minute buckets when the window is chosen", async () => {
    const [lastHour] = await sql<{ messages: string }>(
      "SELECT count(*) AS messages FROM messages WHERE created_at >= now() - interval '1 hour'",
    );
    await page.selectOption("#window", "1h");
    await page.waitForURL(/window=1h/);
    await freshData();
    expect(await text("#bucket")).toBe("5 minutes");
    expect(await number("#total-all")).toBe(Number(lastHour?.messages));
    await page.selectOption("#window", "24h");
    await freshData();
    expect(await number("#total-all")).toBe(240);
  });

  // What SQL says for one team (null: all), in the definitions of the views the dashboards use.
  // (The oldest pending callback's age is as of the page's read.)
  async function expectedFor(team: string | null) {
    const readAt = await page.evaluate(() => document.body.dataset.readAt);
    const [messages] = await sql<{ all: string; failed: string }>(
      `SELECT coalesce(sum(messages), 0) AS all, coalesce(sum(messages) FILTER (WHERE status = 'FAILED'), 0) AS failed
       FROM ops_messages_per_hour WHERE hour >= date_trunc('hour', now() - interval '24 hours', 'UTC')
         AND ($1::text IS NULL OR team = $1)`,
      [team],
    );
    const [stuck] = await sql<{ messages: string }>(
      `SELECT count(*) AS messages FROM ops_stuck_messages
       WHERE age > interval '10 minutes' AND ($1::text IS NULL OR team = $1)`,
      [team],
    );
    const [callbacks] = await sql<{ pending: string; failing: string; endpoints: string; oldest: number }>(
      `SELECT sum(pending) AS pending, count(*) FILTER (WHERE failing_since IS NOT NULL OR NOT enabled) AS failing,
              count(*) AS endpoints, extract(epoch FROM $2::timestamptz - min(oldest_pending_at))::float8 AS oldest
       FROM ops_callback_health WHERE ($1::text IS NULL OR team = $1)`,
      [team, readAt],
    );
    const [window] = await sql<{ delivered: string; failed: string }>(
      `SELECT count(*) FILTER (WHERE status = 'delivered') AS delivered, count(*) FILTER (WHERE status = 'failed') AS failed
       FROM callback_deliveries WHERE created_at >= now() - interval '24 hours' AND ($1::text IS NULL OR team = $1)`,
      [team],
    );
    const [funnel] = await sql<Record<string, string>>(
      `SELECT sum(started) AS started, sum(delivered) AS delivered, sum(read) AS read, sum(approved) AS approved,
              sum(expired) AS expired, sum(max_attempts_reached) AS max_attempts, sum(canceled) AS canceled
       FROM ops_verification_funnel WHERE hour >= now() - interval '25 hours' AND ($1::text IS NULL OR team = $1)`,
      [team],
    );
    const [median] = await sql<{ seconds: number }>(
      `SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM approved_at - created_at)) AS seconds
       FROM verifications WHERE approved_at IS NOT NULL AND ($1::text IS NULL OR team = $1)`,
      [team],
    );
    return {
      messages: Number(messages?.all),
      failed: Number(messages?.failed),
      stuck: Number(stuck?.messages),
      callbacks: {
        pending: Number(callbacks?.pending),
        failing: Number(callbacks?.failing),
        endpoints: Number(callbacks?.endpoints),
        oldest: duration(callbacks?.oldest as number),
        delivered: Number(window?.delivered),
        failed: Number(window?.failed),
      },
      funnel: Object.fromEntries(Object.entries(funnel ?? {}).map(([k, v]) => [k, Number(v)])),
      median: duration(median?.seconds as number),
    };
  }
  // The same numbers, as the page shows them.
  async function shown() {
    return {
      messages: await number("#total-all"),
      failed: await number("#total-FAILED"),
      stuck: await number("#stuck-count"),
      callbacks: {
        pending: await number("#callbacks-pending"),
        failing: await number("#callbacks-failing"),
        endpoints: await number("#callbacks-endpoints"),
        oldest: await text("#callbacks-oldest"),
        delivered: await number("#callbacks-delivered"),
        failed: await number("#callbacks-failed"),
      },
      funnel: {
        started: await number("#funnel-started"),
        delivered: await number("#funnel-delivered"),
        read: await number("#funnel-read"),
        approved: await number("#funnel-approved"),
        expired: await number("#funnel-expired"),
        max_attempts: await number("#funnel-max-attempts"),
        canceled: await number("#funnel-canceled"),
      },
      median: await text("#funnel-median"),
    };
  }

  it("shows callback delivery health and the verification funnel as the views compute them, and draws both", async () => {
    await freshData();
    const expected = await expectedFor(null);
    expect(await shown()).toEqual(expected);
    // The seed has something in every box, so equal numbers are not just zeros.
    expect(expected.callbacks).toMatchObject({ failing: 2, endpoints: 4, oldest: "3.0 h" });
    expect(expected.callbacks.pending).toBeGreaterThan(1);
    expect(expected.callbacks.failed).toBeGreaterThan(0);
    expect(expected.funnel.started).toBeGreaterThan(expected.funnel.approved as number);
    expect(expected.funnel.approved).toBeGreaterThan(0);

    // The endpoints needing attention come first; addresses lose their query (it may hold a secret).
    const endpoints = await page.$$eval("#callback-endpoints tbody tr", (trs) =>
      trs.map((tr) => Array.from(tr.querySelectorAll("td")).map((td) => td.textContent)),
    );
    const health = await sql<{ endpoint_id: string; pending: string }>(
      `SELECT endpoint_id, pending FROM ops_callback_health
       ORDER BY (NOT enabled OR failing_since IS NOT NULL) DESC, pending DESC, endpoint_id`,
    );
    expect(endpoints.map((row) => [row[0], row[4]])).toEqual(health.map((r) => [r.endpoint_id, r.pending]));
    expect(endpoints.slice(0, 2).map((row) => row[0])).toEqual(["ep_ops_growth_failing", "ep_ops_billing_off"]);
    expect(endpoints[1]?.[3]).toBe("disabled: 410 Gone");
    expect(endpoints.map((row) => row[2])).toContain("https://growth.example/otp");
    expect(await page.content()).not.toContain("token=secret");

    // Funnel bars: started is full width, each later step narrower, none empty.
    const bars = await page.$$eval(".funnel .bar span", (spans) => spans.map((s) => s.getBoundingClientRect().width));
    expect(bars).toHaveLength(4);
    expect(bars[0]).toBeGreaterThan(100);
    for (let i = 1; i < bars.length; i++) {
      expect(bars[i]).toBeGreaterThan(0);
      expect(bars[i]).toBeLessThanOrEqual(bars[i - 1] as number);
    }
    expect(consoleErrors).toEqual([]);
  });

  it("filters every message, callback and verification number by the chosen team, as SQL does", async () => {
    const teams = await page.$$eval("#team option", (options) => options.map((o) => (o as HTMLOptionElement).value));
    const known = await sql<{ team: string }>(
      "SELECT DISTINCT team FROM messages UNION SELECT team FROM callback_endpoints ORDER BY 1",
    );
    expect(teams).toEqual(["", ...known.map((r) => r.team)]);
    expect(teams).toEqual(expect.arrayContaining(["billing", "growth"]));
    const all = await expectedFor(null);
    for (const team of ["billing", "growth"]) {
      await page.selectOption("#team", team);
      await page.waitForURL(new RegExp(`team=${team}`));
      await freshData();
      const expected = await expectedFor(team);
      expect(await shown(), team).toEqual(expected);
      expect(expected.messages).toBeLessThan(all.messages);
      expect(expected.funnel.started).toBeLessThan(all.funnel.started as number);
    }
    // Background work stays for all teams, and says so.
    expect(await number("#buffered-count")).toBe(2);
    expect(await text("#background-note")).toMatch(/^Always all teams/);
    await page.selectOption("#team", "");
    await freshData();
    expect(await number("#total-all")).toBe(240);
    expect(consoleErrors).toEqual([]);
  });

  it("shows a FAILED status the webhook reports after its next refresh", async () => {
    const failedBefore = await number("#total-FAILED");
    const sent = await fetch(`${base}/v1/messages`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ to: aPhoneNumber(), text: "Your code is 482910" }),
    });
    expect(sent.status).toBe(201);
    const { uuid } = (await sent.json()) as { uuid: string };
    const hook = await fetch(`${base}/webhooks/betatel`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ uuid, status: "FAILED", error: { code: 131049, message: "Ecosystem engagement limit" } }),
    });
    expect((await hook.json()) as unknown).toEqual({ results: [{ uuid, status: "FAILED", outcome: "applied" }] });

    await freshData();
    await expect.poll(() => number("#total-FAILED")).toBe(failedBefore + 1);
    const row = await page.$$eval("#failures tbody tr", (trs) =>
      trs
        .map((tr) => Array.from(tr.querySelectorAll("td")).map((td) => td.textContent))
        .find((cells) => cells[0] === "131049"),
    );
    expect(row).toEqual(["131049", "Ecosystem engagement limit", "1", uuid]);
    expect(consoleErrors).toEqual([]);
  });
});
