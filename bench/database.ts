import pg from "pg";
import { applyMigrations } from "../src/db/migrate.ts";
import { decide } from "../src/tracking/state-machine.ts";
import type { Status } from "../src/tracking/status.ts";
import type { History } from "./workload.ts";

export interface BenchDatabase {
  name: string;
  url: string;
  pool: pg.Pool;
  drop(): Promise<void>;
}

/** A fresh, migrated database on the real server, named `otp_bench_<timestamp>`. */
export async function createBenchDatabase(adminUrl: string): Promise<BenchDatabase> {
  const name = `otp_bench_${Date.now()}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  const pool = new pg.Pool({ connectionString: url.toString(), max: 2 });
  pool.on("error", () => {}); // the final DROP ... WITH (FORCE) may end a connection still idle here
  await applyMigrations(pool);
  return {
    name,
    url: url.toString(),
    pool,
    async drop() {
      await pool.end();
      await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await admin.end();
    },
  };
}

/**
 * Inserts messages `bench-<first>` .. `bench-<first + count - 1>` in bulk, in the shape `createMessage`
 * writes: the messages row (PENDING) and its PENDING event.
 */
export async function seedMessages(pool: pg.Pool, first: number, count: number, createdAt: Date): Promise<void> {
  const range = [first, first + count - 1, createdAt];
  await pool.query(
    `INSERT INTO messages (uuid, "to", status, text_length, created_at, updated_at)
     SELECT 'bench-' || n, '3876' || lpad(n::text, 7, '0'), 'PENDING', 6, $3, $3 FROM generate_series($1::int, $2::int) n`,
    range,
  );
  await pool.query(
    `INSERT INTO message_events (uuid, status, outcome, occurred_at, received_at, source)
     SELECT 'bench-' || n, 'PENDING', 'applied', $3, $3, 'api' FROM generate_series($1::int, $2::int) n`,
    range,
  );
}

/** What the load generator reported per message: statuses acknowledged 2xx, and sent without an answer. */
export interface Sent {
  acked: Set<Status>;
  unanswered: Set<Status>;
  /** Statuses in the order they were first sent. */
  order: Status[];
}

const COLUMN: Partial<Record<Status, string>> = {
  SENT: "sent_at",
  DELIVERED: "delivered_at",
  READ: "read_at",
  FAILED: "failed_at",
};

interface Row {
  uuid: string;
  status: Status;
  sent_at: Date | null;
  delivered_at: Date | null;
  read_at: Date | null;
  failed_at: Date | null;
  error_code: string | null;
  events: Array<{ status: Status; outcome: string }>;
}

/**
 * Checks every benchmarked message against what the load generator saw: each acknowledged status is stored
 * exactly once, nothing is stored that was never sent, the status is what one-by-one processing of the stored
 * events gives, and each stored status's timestamp is the one that was sent. Returns the problems found.
 */
export async function verify(pool: pg.Pool, messages: History[], sent: Map<number, Sent>): Promise<string[]> {
  const problems: string[] = [];
  const { rows } = await pool.query<Row>(
    `SELECT m.uuid, m.status, m.sent_at, m.delivered_at, m.read_at, m.failed_at, m.error_code,
            (SELECT json_agg(json_build_object('status', e.status, 'outcome', e.outcome)) FROM message_events e
             WHERE e.uuid = m.uuid) AS events
     FROM messages m WHERE m.uuid = ANY($1::text[])`,
    [messages.map((m) => m.uuid)],
  );
  const byUuid = new Map(rows.map((row) => [row.uuid, row]));
  for (const history of messages) {
    const row = byUuid.get(history.uuid);
    const report = (what: string) => problems.length < 20 && problems.push(`${history.uuid}: ${what}`);
    if (!row) {
      report("message row missing");
      continue;
    }
    const info = sent.get(history.n) ?? { acked: new Set(), unanswered: new Set(), order: [] };
    const stored = row.events.map((e) => e.status);
    if (new Set(stored).size !== stored.length) report(`more than one event per status: ${stored.join(",")}`);
    if (!stored.includes("PENDING")) report("PENDING event missing");
    for (const status of info.acked) if (!stored.includes(status)) report(`acknowledged ${status} was not stored`);
    for (const status of stored) {
      if (status !== "PENDING" && !info.acked.has(status) && !info.unanswered.has(status)) {
        report(`${status} stored but never sent`);
      }
    }
    const buffered = row.events.filter((e) => e.outcome === "buffered");
    if (buffered.length > 0) report("an event is still buffered although its message exists");

    // One-by-one processing, in the order the statuses were sent (for these histories any order agrees).
    let expected: Status = "PENDING";
    for (const status of info.order) {
      if (stored.includes(status) && decide(expected, status) === "applied") expected = status;
    }
    if (row.status !== expected) report(`status ${row.status}, expected ${expected}`);
    for (const { status, timestamp } of history.statuses) {
      const column = COLUMN[status] as keyof Row;
      const value = row[column] as Date | null;
      const want = stored.includes(status) ? new Date(timestamp).getTime() : null;
      if ((value?.getTime() ?? null) !== want) report(`${column} is ${value?.toISOString()}, expected ${timestamp}`);
    }
    if (expected === "FAILED" && row.error_code !== "131026") report("the FAILED reason was not stored");
  }
  return problems;
}
