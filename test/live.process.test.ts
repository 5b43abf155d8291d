import { mkdtemp, rm } from "node:fs/promises";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { createWatchAccess } from "../src/live/watch-token.ts";
import { type FakeBetatel, startFakeBetatel } from "./support/fake-betatel.ts";
import { eventually, openRawRequests, type RawRequest, rawRequest } from "./support/live-fixtures.ts";
import { insertMessage } from "./support/message-rows.ts";
import { productionNodeFlags, type SpawnedServer, spawnServer } from "./support/spawn-server.ts";
import { embedded } from "./support/test-database.ts";

/** The service as an operator runs it: its own process, with the heap flags of `npm start`. */
const KEYS = ["live-key-a", "live-key-b", "live-key-c", "live-key-d"];
const SECRET = "live-process-webhook-secret";

let fake: FakeBetatel;
let pool: pg.Pool;
beforeAll(async () => {
  fake = await startFakeBetatel();
  if (!embedded) pool = new pg.Pool({ connectionString: inject("databaseUrl"), max: 2 });
});
afterAll(async () => {
  await pool?.end();
  await fake?.close();
});

const env = (extra: Record<string, string> = {}) => ({
  NODE_ENV: "production",
  VERIFY_SECRET: "test-verify-secret-test-verify-secret-0123",
  DATABASE_URL: inject("databaseUrl"),
  API_KEYS: KEYS.join(","),
  WEBHOOK_SECRET: SECRET,
  WATCH_SECRET: "live-process-watch-secret-0123456789abcdef",
  BETATEL_BASE_URL: fake.url,
  BETATEL_API_KEY: "live-process-betatel-key",
  BETATEL_ACCOUNT_ID: "live-process-account",
  RECONCILE_INTERVAL_MS: "0",
  // The run's database is shared with other files: the sweep test must not expire their rows.
  EXPIRE_AFTER_MS: "0",
  ...extra,
});

/** Heap and RSS of the service, as its own /metrics reports them. */
async function memoryOf(server: SpawnedServer) {
  const text = await (await fetch(`${server.url}/metrics`)).text();
  const read = (name: string) => Number(new RegExp(`^${name} (\\S+)`, "m").exec(text)?.[1]);
  return { heapUsed: read("nodejs_heap_size_used_bytes"), rss: read("process_resident_memory_bytes") };
}

const MB = 1024 * 1024;
const mb = (bytes: number) => Math.round((bytes / MB) * 10) / 10;

/** A message created through the front door (the fake Betatel picks its uuid). */
async function sendOtp(server: SpawnedServer): Promise<{ uuid: string }> {
  const res = await fetch(`${server.url}/v1/messages`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-api-key": KEYS[0] ?? "" },
    body: JSON.stringify({ to: "38761444555", text: "Your code is 135790" }),
  });
  expect(res.status).toBe(201);
  return (await res.json()) as { uuid: string };
}

describe("live status at the default caps, in the real process", () => {
  it(`when 2,000 streams and long-polls are open (4 keys x 500, ${embedded ? "embedded database" : "Postgres server"}), then the next one gets 429, and the process stays alive within its heap`, async () => {
    const flags = await productionNodeFlags();
    expect(flags).toContain("--max-old-space-size=160");
    // The database the run uses: on the embedded run, the zero-config path (PGlite in a folder of its own).
    const dataDir = embedded ? await mkdtemp(path.join(tmpdir(), "otp-live-")) : undefined;
    const server = await spawnServer(
      dataDir
        ? // Production refuses the embedded database: this is the development start on it.
          { ...env({ RATE_LIMIT_PER_MINUTE: "0" }), NODE_ENV: "development", DATABASE_URL: "", DATA_DIR: dataDir }
        : env(),
      30_000,
      { nodeFlags: flags },
    );
    const opened: RawRequest[] = [];
    try {
      const messages: Array<{ uuid: string }> = [];
      for (let i = 0; i < 20; i++) messages.push(await sendOtp(server));
      const before = await memoryOf(server);
      const uuidOf = (index: number) => (messages[index % messages.length] as { uuid: string }).uuid;
      // Three keys stream (500 each), the fourth long-polls (500): both count against the same caps.
      const streams = await openRawRequests(1500, (i) =>
        rawRequest(server.url, `/v1/messages/${uuidOf(i)}/stream`, { "x-api-key": KEYS[i % 3] as string }),
      );
      opened.push(...streams.requests);
      expect(streams.statuses.every((status) => status === 200)).toBe(true);
      for (let i = 0; i < 500; i++) {
        const path = `/v1/messages/${uuidOf(i)}?waitFor=READ&timeout=60`;
        opened.push(rawRequest(server.url, path, { "x-api-key": KEYS[3] as string }));
      }

      // Every slot taken (the long-polls answer nothing yet: wait until the last of them counts), and the next
      // watcher of any key is refused, with a problem and Retry-After.
      await eventually(async () => {
        const extra = rawRequest(server.url, `/v1/messages/${messages[0]?.uuid}/stream`, {
          "x-api-key": KEYS[3] ?? "",
        });
        opened.push(extra);
        return (await extra.status()) === 429;
      }, 20_000);
      for (const key of KEYS) {
        const extra = rawRequest(server.url, `/v1/messages/${messages[0]?.uuid}/stream`, { "x-api-key": key });
        opened.push(extra);
        expect(await extra.status()).toBe(429);
      }
      const refused = await fetch(`${server.url}/v1/messages/${messages[0]?.uuid}?waitFor=READ&timeout=5`, {
        headers: { "x-api-key": KEYS[3] ?? "" },
      });
      expect(refused.status).toBe(429);
      expect(refused.headers.get("content-type")).toMatch(/^application\/problem\+json/);
      expect(Number(refused.headers.get("retry-after"))).toBeGreaterThan(0);
      expect(await refused.json()).toMatchObject({ code: "too_many_watchers" });

      // One change of every watched message reaches all 1,500 streams.
      const res = await fetch(`${server.url}/webhooks/betatel`, {
        method: "POST",
        headers: { "content-type": "application/json", "x-webhook-secret": SECRET },
        body: JSON.stringify(messages.map(({ uuid }) => ({ uuid, status: "delivered" }))),
      });
      expect(res.status).toBe(200);
      await eventually(() => streams.requests.every((stream) => stream.events() === 2), 30_000);

      const after = await memoryOf(server);
      expect(server.child.exitCode).toBeNull();
      expect((await fetch(`${server.url}/healthz`)).status).toBe(200);
      const one = await fetch(`${server.url}/v1/messages/${messages[1]?.uuid}`, {
        headers: { "x-api-key": KEYS[1] ?? "" },
      });
      expect(await one.json()).toMatchObject({ status: "DELIVERED" });
      // The margin: the heap with every slot taken stays well under the 160 MB the process is started with.
      expect(after.heapUsed).toBeLessThan(0.75 * 160 * MB);
      console.info(
        `live status at the cap (${embedded ? "embedded" : "postgres"}): heap ${mb(before.heapUsed)} -> ${mb(after.heapUsed)} MB, RSS ${mb(before.rss)} -> ${mb(after.rss)} MB, ` +
          `${Math.round((after.heapUsed - before.heapUsed) / 2000 / 102.4) / 10} KB heap per watcher`,
      );
    } finally {
      for (const request of opened) request.close();
      server.kill("SIGKILL");
      await server.exited;
      if (dataDir) await rm(dataDir, { recursive: true, force: true });
    }
  }, 120_000);
});

describe.skipIf(embedded)("live status in the real process", () => {
  it("when the periodic sweep settles a status left buffered, then open streams get the change", async () => {
    const server = await spawnServer(env({ SWEEP_INTERVAL_MS: "300" }));
    const { uuid } = await insertMessage(pool);
    const stream = rawRequest(server.url, `/v1/messages/${uuid}/stream`, { "x-api-key": KEYS[0] ?? "" });
    try {
      await eventually(() => stream.events() === 1);
      // A status the webhook stored as buffered, by a process that stopped before settling it.
      await pool.query(
        `INSERT INTO message_events (uuid, status, outcome, occurred_at, received_at, source, payload)
         VALUES ($1, 'DELIVERED', 'buffered', now(), now(), 'webhook', $2)`,
        [uuid, JSON.stringify({ uuid, status: "delivered" })],
      );

      await eventually(() => stream.events() === 2, 5000);
      expect(stream.received()).toMatch(/data: \{[^\n]*"status":"DELIVERED"/);
    } finally {
      stream.close();
      server.kill("SIGKILL");
      await server.exited;
    }
  }, 30_000);

  it("when a stream is asked for after SIGTERM, then it is answered 503 at once (not held until the forced close); a browser's watch-token stream is told to come back", async () => {
    const server = await spawnServer(env());
    try {
      const { uuid } = await insertMessage(pool);
      const open = rawRequest(server.url, `/v1/messages/${uuid}/stream`, { "x-api-key": KEYS[0] ?? "" });
      expect(await open.status()).toBe(200);
      // Requests already on their way when the signal comes: their connections keep the server draining.
      const { port } = new URL(server.url);
      const lateRequest = (requestLine: string) => {
        const socket = connect(Number(port), "127.0.0.1");
        const late = { socket, answer: "" };
        socket.setEncoding("utf8").on("data", (chunk: string) => {
          late.answer += chunk;
        });
        socket.on("error", () => {});
        socket.write(`${requestLine}\r\nhost: 127.0.0.1\r\n`);
        return late;
      };
      const late = lateRequest(`GET /v1/messages/${uuid}/stream HTTP/1.1`);
      const token = createWatchAccess({ secret: env().WATCH_SECRET }).issue(uuid);
      const lateBrowser = lateRequest(`GET /v1/messages/${uuid}/stream?watch=${token} HTTP/1.1`);
      await sleep(200);

      server.kill("SIGTERM");
      await eventually(() => open.received().endsWith("0\r\n\r\n"), 5000); // the open stream was ended
      const startedAt = Date.now();
      late.socket.write(`x-api-key: ${KEYS[0]}\r\n\r\n`);
      lateBrowser.socket.write("accept: text/event-stream\r\n\r\n");

      await eventually(() => late.answer.includes("\r\n\r\n{"), 5000);
      expect(Date.now() - startedAt).toBeLessThan(2000);
      expect(late.answer).toMatch(/^HTTP\/1\.1 503/);
      expect(late.answer).toMatch(/retry-after: \d+/i);
      expect(late.answer).toContain('"code":"shutting_down"');
      // An EventSource would give up for good on a 503: it gets a stream that says when to come back, and ends.
      await eventually(() => lateBrowser.answer.includes("shutting_down"), 5000);
      expect(lateBrowser.answer).toMatch(/^HTTP\/1\.1 200/);
      expect(lateBrowser.answer).toMatch(/content-type: text\/event-stream/i);
      expect(lateBrowser.answer).toContain("retry: 1000");
      expect(lateBrowser.answer).not.toMatch(/^data: /m);
      expect(await server.exited).toBe(0);
      late.socket.destroy();
      lateBrowser.socket.destroy();
    } finally {
      server.kill("SIGKILL");
    }
  }, 60_000);
});
