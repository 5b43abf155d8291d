import pg from "pg";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { type FakeBetatel, startFakeBetatel } from "./support/fake-betatel.ts";
import { createScratchDatabase, type ScratchDatabase } from "./support/scratch-database.ts";
import { spawnServer } from "./support/spawn-server.ts";
import { aPhoneNumber, aUuid, TEST_BETATEL } from "./support/test-app.ts";

const API_KEY = "process-fault-key";

let fake: FakeBetatel;
beforeAll(async () => {
  fake = await startFakeBetatel();
});
afterAll(() => fake.close());

const env = (databaseUrl: string) => ({
  NODE_ENV: "production",
  VERIFY_SECRET: "test-verify-secret-test-verify-secret-0123",
  DATABASE_URL: databaseUrl,
  API_KEYS: API_KEY,
  WEBHOOK_SECRET: "process-fault-webhook-secret",
  WATCH_SECRET: "process-fault-watch-secret-0123456789abcdef",
  BETATEL_BASE_URL: fake.url,
  BETATEL_API_KEY: TEST_BETATEL.apiKey,
  BETATEL_ACCOUNT_ID: TEST_BETATEL.accountId,
  RATE_LIMIT_PER_MINUTE: "0",
  RECONCILE_INTERVAL_MS: "0",
});

const sendOtp = (url: string) =>
  fetch(`${url}/v1/messages`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-api-key": API_KEY },
    body: JSON.stringify({ to: aPhoneNumber(), text: "Your code is 135790" }),
  });

const postStatuses = (url: string, items: unknown[]) =>
  fetch(`${url}/webhooks/betatel`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-webhook-secret": "process-fault-webhook-secret" },
    body: JSON.stringify(items),
  });

async function until(condition: () => boolean, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe("SIGTERM", () => {
  it("when a slow send is in flight, then it still completes 201, new connections are refused, and the process exits 0", async () => {
    fake.reset();
    const server = await spawnServer(env(inject("databaseUrl")));
    const uuid = aUuid();
    fake.reply({ status: 200, body: { uuid, to: "38761000000" }, delayMs: 1500 });

    const slow = sendOtp(server.url);
    await until(() => fake.requests.length === 1);
    server.kill("SIGTERM");
    await new Promise((resolve) => setTimeout(resolve, 200));
    await expect(fetch(`${server.url}/healthz`)).rejects.toThrow();

    const res = await slow;
    expect(res.status).toBe(201);
    expect(((await res.json()) as { uuid: string }).uuid).toBe(uuid);
    const answered = Date.now();
    expect(await server.exited).toBe(0);
    // Exits right after the last response, not when keep-alive or the forced close would end the connection.
    expect(Date.now() - answered).toBeLessThan(3_000);
    expect(server.output()).toContain("shutting down");
    expect(server.output()).toContain('"msg":"stopped"');

    // The drained request really stored its message.
    const client = new pg.Client({ connectionString: inject("databaseUrl") });
    await client.connect();
    const { rows } = await client.query("SELECT status FROM messages WHERE uuid = $1", [uuid]);
    await client.end();
    expect(rows).toEqual([{ status: "PENDING" }]);
  });
});

describe("SIGTERM with a query stuck behind another session's lock", () => {
  it("when a read waits on a locked table, then the process still exits within the shutdown grace", async () => {
    const scratch = await createScratchDatabase("stucklock");
    const graceMs = 22_000; // the least the config accepts with BETATEL_TIMEOUT_MS=1000
    const server = await spawnServer({
      ...env(scratch.url),
      BETATEL_TIMEOUT_MS: "1000",
      SHUTDOWN_GRACE_MS: String(graceMs),
      // Longer than the test: only the grace can end the wait.
      DATABASE_QUERY_TIMEOUT_MS: "600000",
    });
    const locker = new pg.Client({ connectionString: scratch.url });
    await locker.connect();
    try {
      await locker.query("BEGIN");
      await locker.query("LOCK TABLE messages IN ACCESS EXCLUSIVE MODE");
      const stuck = fetch(`${server.url}/v1/messages/${aUuid()}`, { headers: { "x-api-key": API_KEY } }).catch(
        () => undefined,
      );
      await new Promise((resolve) => setTimeout(resolve, 500));
      const stoppedAt = Date.now();
      server.kill("SIGTERM");
      const exitCode = await Promise.race([
        server.exited,
        new Promise((resolve) => setTimeout(() => resolve("still running"), graceMs + 5_000)),
      ]);
      expect(exitCode).toBe(1);
      expect(Date.now() - stoppedAt).toBeLessThan(graceMs + 3_000);
      expect(server.output()).toContain("the database connections did not close within the grace");
      await stuck;
    } finally {
      server.kill("SIGKILL");
      await locker.query("ROLLBACK");
      await locker.end();
      await scratch.drop();
    }
  }, 60_000);
});

describe("SIGTERM with sends that outlast the old fixed 25 s forced close", () => {
  it("when five sends wait 26 s on Betatel, then shutdown waits for them: all answered 201, stored, their keys answered, exit 0", async () => {
    fake.reset();
    const server = await spawnServer({
      ...env(inject("databaseUrl")),
      BETATEL_TIMEOUT_MS: "30000",
      // A send can take 5 + 30 + 10 + 5 + 1 s: the grace must cover it (a smaller one refuses to start).
      SHUTDOWN_GRACE_MS: "51000",
    });
    const uuids = Array.from({ length: 5 }, () => aUuid());
    fake.reply(...uuids.map((uuid) => ({ status: 200, body: { uuid, to: "38761000000" }, delayMs: 26_000 })));
    const keys = uuids.map(() => `shutdown-${aUuid()}`);

    const sends = keys.map((key) =>
      fetch(`${server.url}/v1/messages`, {
        method: "POST",
        headers: { "content-type": "application/json", "x-api-key": API_KEY, "idempotency-key": key },
        body: JSON.stringify({ to: aPhoneNumber(), text: "Your code is 135790" }),
      }),
    );
    await until(() => fake.requests.length === 5);
    server.kill("SIGTERM");

    const answers = await Promise.all(sends);
    expect(answers.map((res) => res.status)).toEqual([201, 201, 201, 201, 201]);
    expect(await server.exited).toBe(0);
    expect(server.output()).not.toContain("abandoned");

    const client = new pg.Client({ connectionString: inject("databaseUrl") });
    await client.connect();
    const stored = await client.query("SELECT uuid FROM messages WHERE uuid = ANY($1)", [uuids]);
    const answered = await client.query(
      "SELECT response_status FROM idempotency_keys WHERE key = ANY($1) AND response_status IS NOT NULL",
      [keys],
    );
    await client.end();
    expect(stored.rowCount).toBe(5);
    expect(answered.rowCount).toBe(5);
  }, 60_000);
});

describe("independent schedules", () => {
  let scratch: ScratchDatabase;
  beforeAll(async () => {
    scratch = await createScratchDatabase("sweep");
  });
  afterAll(() => scratch.drop());

  it("when the delivery-record poller is off (RECONCILE_INTERVAL_MS=0), then expiry still runs on its own schedule", async () => {
    fake.reset();
    const server = await spawnServer({
      ...env(scratch.url),
      RECONCILE_INTERVAL_MS: "0",
      SWEEP_INTERVAL_MS: "200",
      EXPIRE_AFTER_MS: "1000",
    });
    try {
      const sent = await sendOtp(server.url);
      expect(sent.status).toBe(201);
      const { uuid } = (await sent.json()) as { uuid: string };

      let status = "";
      const deadline = Date.now() + 10_000;
      while (status !== "EXPIRED" && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 200));
        const read = await fetch(`${server.url}/v1/messages/${uuid}`, { headers: { "x-api-key": API_KEY } });
        status = ((await read.json()) as { status: string }).status;
      }

      expect(status).toBe("EXPIRED");
      expect(fake.requests.filter((req) => req.url.endsWith("/wdr"))).toHaveLength(0);
    } finally {
      server.kill("SIGTERM");
      await server.exited;
    }
  });
});

describe("orphan adoption in the running service", () => {
  let scratch: ScratchDatabase;
  beforeAll(async () => {
    scratch = await createScratchDatabase("orphans");
  });
  afterAll(() => scratch.drop());

  it("when statuses arrive for a uuid never stored and Betatel knows it, then the message appears and the adoption is counted", async () => {
    fake.reset();
    const uuid = aUuid();
    fake.always((request) =>
      request.url === `/api/v1/connect-hub/whatsapp/${uuid}/wdr`
        ? { status: 200, body: { uuid, to: "38761444555", status: "read", timestamp: "2026-11-27T10:00:00Z" } }
        : { status: 404, body: { message: "not found" } },
    );
    const server = await spawnServer({
      ...env(scratch.url),
      RECONCILE_INTERVAL_MS: "200",
      ORPHAN_ADOPT_AFTER_MS: "300",
    });
    try {
      expect((await postStatuses(server.url, [{ uuid, status: "DELIVERED" }])).status).toBe(200);

      // The adopted row (team "(adopted)": Betatel's record does not say which team sent it, so no key reads it).
      // Created from the record with its buffered DELIVERED, then READ from the record at the next check.
      let rows: Array<{ to: string; status: string; team: string }> = [];
      const deadline = Date.now() + 15_000;
      while (rows[0]?.status !== "READ" && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 200));
        rows = await scratch.query(`SELECT "to", status::text AS status, team FROM messages WHERE uuid = $1`, [uuid]);
      }
      expect(rows).toEqual([{ to: "38761444555", status: "READ", team: "(adopted)" }]);
      const read = await fetch(`${server.url}/v1/messages/${uuid}`, { headers: { "x-api-key": API_KEY } });
      expect(read.status).toBe(404);
      const metrics = await (await fetch(`${server.url}/metrics`)).text();
      expect(metrics).toMatch(/^otp_orphans_adopted_total 1$/m);
      expect(server.output()).toContain("adopted a message");
      expect(server.output()).not.toContain("38761444555");
    } finally {
      server.kill("SIGTERM");
      await server.exited;
    }
  });
});

describe("SIGKILL mid-load", () => {
  let scratch: ScratchDatabase;
  beforeAll(async () => {
    scratch = await createScratchDatabase("sigkill");
  });
  afterAll(() => scratch.drop());

  it("when the process is killed while sends and webhooks are in flight, then no message or event is half-written", async () => {
    fake.reset();
    const server = await spawnServer(env(scratch.url));
    // Betatel answers after a short random delay, and its status webhook races the send (buffered events).
    fake.always((request) => {
      const uuid = aUuid();
      void postStatuses(server.url, [{ uuid, status: "SENT" }]).catch(() => {});
      return { status: 200, body: { uuid, to: (request.json as { to: string }).to }, delayMs: Math.random() * 20 };
    });

    let created = 0;
    let interrupted = 0;
    let stop = false;
    const worker = async () => {
      while (!stop) {
        try {
          const res = await sendOtp(server.url);
          if (res.status !== 201) continue;
          created++;
          const { uuid } = (await res.json()) as { uuid: string };
          await postStatuses(server.url, [
            { uuid, status: "DELIVERED" },
            { uuid, status: "READ" },
          ]);
        } catch {
          interrupted++;
          return;
        }
      }
    };
    const workers = Array.from({ length: 12 }, worker);
    await until(() => created >= 40, 20_000);
    server.kill("SIGKILL");
    stop = true;
    await Promise.all(workers);
    expect(await server.exited).toBe("SIGKILL");
    expect(interrupted).toBeGreaterThan(0);
    console.log(`SIGKILL mid-load: ${created} sends answered 201, ${interrupted} requests cut by the kill`);

    const [check] = await scratch.query<Record<string, number>>(`SELECT
      (SELECT count(*)::int FROM messages) AS messages,
      (SELECT count(*)::int FROM messages m WHERE NOT EXISTS
        (SELECT 1 FROM message_events e WHERE e.uuid = m.uuid AND e.status = 'PENDING')) AS without_pending,
      (SELECT count(*)::int FROM messages m WHERE NOT EXISTS
        (SELECT 1 FROM message_events e WHERE e.uuid = m.uuid AND e.status = m.status AND e.outcome = 'applied'))
        AS status_without_event,
      (SELECT count(*)::int FROM messages m WHERE (m.sent_at IS NOT NULL) <> EXISTS
        (SELECT 1 FROM message_events e WHERE e.uuid = m.uuid AND e.status = 'SENT' AND e.outcome IN ('applied', 'stale')))
        AS sent_at_mismatch,
      (SELECT count(*)::int FROM message_events e WHERE e.outcome <> 'buffered' AND NOT EXISTS
        (SELECT 1 FROM messages m WHERE m.uuid = e.uuid)) AS orphan_events,
      (SELECT count(*)::int FROM message_events e WHERE e.outcome = 'buffered' AND EXISTS
        (SELECT 1 FROM messages m WHERE m.uuid = e.uuid)) AS unsettled_buffered`);
    expect(check?.messages).toBeGreaterThanOrEqual(created);
    expect(check).toMatchObject({
      without_pending: 0,
      status_without_event: 0,
      sent_at_mismatch: 0,
      orphan_events: 0,
      unsettled_buffered: 0,
    });

    // The next start on the same database serves normally.
    fake.reset();
    const again = await spawnServer(env(scratch.url));
    expect((await sendOtp(again.url)).status).toBe(201);
    again.kill("SIGTERM");
    expect(await again.exited).toBe(0);
  });
});
