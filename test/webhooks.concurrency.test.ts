import { type ChildProcess, spawn } from "node:child_process";
import path from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { type FakeBetatel, startFakeBetatel } from "./support/fake-betatel.ts";
import { aFreePort } from "./support/free-port.ts";
import { aPhoneNumber, TEST_BETATEL } from "./support/test-app.ts";
import { embedded } from "./support/test-database.ts";
import { byRank, foldEvents, HISTORIES, type HistoryEvent, timestampsFor } from "./support/webhook.ts";

const INSTANCES = 2;
const MESSAGES = 500;
const CLIENTS = 16;
const ROOT = path.resolve(import.meta.dirname, "..");

interface Instance {
  url: string;
  child: ChildProcess;
  output: string[];
}

/** A real service process (`tsx src/server.ts`) on the run's database, with Betatel pointing at the fake. */
async function startInstance(betatel: FakeBetatel): Promise<Instance> {
  const port = await aFreePort();
  const child = spawn(path.join(ROOT, "node_modules/.bin/tsx"), ["src/server.ts"], {
    cwd: ROOT,
    env: {
      ...process.env,
      NODE_ENV: "test",
      PORT: String(port),
      DATABASE_URL: inject("databaseUrl"),
      DATABASE_POOL_SIZE: "8",
      BETATEL_BASE_URL: betatel.url,
      BETATEL_API_KEY: TEST_BETATEL.apiKey,
      BETATEL_ACCOUNT_ID: TEST_BETATEL.accountId,
      LOG_LEVEL: "warn",
      // The run's database is shared: no reconciler claims, and no sweep expires, other files' old rows.
      RECONCILE_INTERVAL_MS: "0",
      SWEEP_INTERVAL_MS: "0",
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const output: string[] = [];
  child.stdout?.on("data", (chunk: Buffer) => output.push(chunk.toString()));
  child.stderr?.on("data", (chunk: Buffer) => output.push(chunk.toString()));
  const url = `http://127.0.0.1:${port}`;
  for (const started = Date.now(); Date.now() - started < 45_000; ) {
    if (child.exitCode !== null) break;
    const up = await fetch(`${url}/healthz`).then(
      (res) => res.ok,
      () => false,
    );
    if (up) return { url, child, output };
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  child.kill("SIGKILL");
  throw new Error(`service did not start on ${url}:\n${output.join("")}`);
}

async function stopInstance(instance: Instance) {
  if (instance.child.exitCode !== null) return;
  const exited = new Promise((resolve) => instance.child.once("exit", resolve));
  instance.child.kill("SIGTERM");
  await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 5000))]);
  if (instance.child.exitCode === null) instance.child.kill("SIGKILL");
}

async function post(url: string, body: unknown): Promise<{ status: number; body: unknown }> {
  const res = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: await res.json().catch(() => undefined) };
}

/** Runs `work` over `items` with `concurrency` workers. */
async function inParallel<T>(
  items: readonly T[],
  concurrency: number,
  work: (item: T, index: number) => Promise<void>,
) {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < items.length) {
        const index = next++;
        await work(items[index] as T, index);
      }
    }),
  );
}

const pick = <T>(items: readonly T[]): T => items[Math.floor(Math.random() * items.length)] as T;

function shuffle<T>(items: T[]): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [items[i], items[j]] = [items[j] as T, items[i] as T];
  }
  return items;
}

describe.skipIf(embedded)("POST /webhooks/betatel on several service processes at once", () => {
  let betatel: FakeBetatel;
  let instances: Instance[] = [];
  let pool: pg.Pool;

  beforeAll(async () => {
    betatel = await startFakeBetatel();
    pool = new pg.Pool({ connectionString: inject("databaseUrl"), max: 2 });
    instances = await Promise.all(Array.from({ length: INSTANCES }, () => startInstance(betatel)));
  }, 90_000);
  afterAll(async () => {
    await Promise.all(instances.map(stopInstance));
    await pool?.end();
    await betatel?.close();
  });

  it("when 500 messages' shuffled histories and repeats arrive from many clients over both instances, then every row equals one-by-one processing", async () => {
    // 1. The messages, created through the send path of both instances.
    const uuids: string[] = new Array(MESSAGES);
    await inParallel(Array.from({ length: MESSAGES }), 20, async (_, i) => {
      const instance = instances[i % INSTANCES] as Instance;
      const res = await post(`${instance.url}/v1/messages`, { to: aPhoneNumber(), text: "Your code is 482910" });
      expect(res.status).toBe(201);
      uuids[i] = (res.body as { uuid: string }).uuid;
    });

    // 2. Each message's real history plus repeats, all shuffled together, cut into single and batched bodies.
    const histories = new Map<string, HistoryEvent[]>();
    const items: { uuid: string; status: string; timestamp: string | number }[] = [];
    for (const uuid of uuids) {
      const history = timestampsFor(pick(HISTORIES), 600 + Math.floor(Math.random() * 3600));
      histories.set(uuid, history);
      const repeats = Array.from({ length: Math.floor(Math.random() * 3) }, () => pick(history));
      for (const event of [...history, ...repeats]) {
        const timestamp = Math.random() < 0.5 ? event.at.toISOString() : event.at.getTime() / 1000;
        items.push({ uuid, status: Math.random() < 0.5 ? event.status : event.status.toLowerCase(), timestamp });
      }
    }
    shuffle(items);
    const bodies: unknown[] = [];
    for (let i = 0; i < items.length; ) {
      const size = Math.random() < 0.5 ? 1 : 2 + Math.floor(Math.random() * 24);
      const chunk = items.slice(i, i + size);
      i += size;
      bodies.push(chunk.length === 1 ? chunk[0] : Math.random() < 0.5 ? chunk : { statuses: chunk });
    }

    // 3. Many clients at once, each body to either instance.
    const failures: string[] = [];
    await inParallel(bodies, CLIENTS, async (body, i) => {
      const res = await post(`${(instances[i % INSTANCES] as Instance).url}/webhooks/betatel`, body);
      if (res.status !== 200) failures.push(`${res.status} ${JSON.stringify(res.body)}`);
    });
    expect(failures).toEqual([]);

    // 4. Every row as one-by-one processing in rank order would leave it; one event row per (uuid, status).
    const { rows } = await pool.query(
      `SELECT uuid, status, sent_at, delivered_at, read_at, failed_at, expired_at,
              (SELECT count(*)::int FROM message_events e WHERE e.uuid = m.uuid) AS events,
              (SELECT count(DISTINCT e.status)::int FROM message_events e WHERE e.uuid = m.uuid) AS statuses
       FROM messages m WHERE uuid = ANY($1)`,
      [uuids],
    );
    expect(rows).toHaveLength(MESSAGES);
    const iso = (value: Date | null) => value?.toISOString() ?? null;
    const wrong = rows.filter((row) => {
      const history = histories.get(row.uuid) as HistoryEvent[];
      const expected = foldEvents(byRank(history));
      const actual = {
        status: row.status,
        SENT: iso(row.sent_at),
        DELIVERED: iso(row.delivered_at),
        READ: iso(row.read_at),
        FAILED: iso(row.failed_at),
        EXPIRED: iso(row.expired_at),
      };
      const want = {
        status: expected.status,
        SENT: expected.timestamps.SENT ?? null,
        DELIVERED: expected.timestamps.DELIVERED ?? null,
        READ: expected.timestamps.READ ?? null,
        FAILED: expected.timestamps.FAILED ?? null,
        EXPIRED: expected.timestamps.EXPIRED ?? null,
      };
      const eventsOk = row.events === history.length + 1 && row.statuses === row.events;
      return !eventsOk || JSON.stringify(actual) !== JSON.stringify(want);
    });
    expect(wrong).toEqual([]);
  }, 90_000);
});
