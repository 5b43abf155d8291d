import { execFile } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { promisify } from "node:util";
import { APPLY_NEW_EVENTS } from "../src/tracking/apply.ts";

const run = promisify(execFile);
export const PGBENCH = process.env.PGBENCH ?? "/usr/bin/pgbench";

// The webhook's parameters as pgbench expressions: one-element arrays, as for a single-status request.
// `:m` is the message number and `:step` its next status (SENT, DELIVERED, READ in turn).
const PARAMETERS: Record<string, string> = {
  1: "ARRAY['bench-' || :m]",
  2: "ARRAY[(ARRAY['SENT', 'DELIVERED', 'READ'])[:step]]",
  3: "ARRAY[now() - interval '1 minute']",
  4: "ARRAY['webhook']",
  5: `ARRAY['{"uuid": "bench-0", "status": "SENT", "wam_id": "wamid.HBgLMzg3NjE0NDQ1NTUVAgARGBI0", "to": "38761444555"}']`,
  6: "ARRAY[NULL]",
  7: "ARRAY[NULL]",
  8: "ARRAY['wamid.HBgLMzg3NjE0NDQ1NTUVAgARGBI0']",
};

/**
 * The pgbench script for one single-status webhook: the very statement the service runs (imported, so it
 * cannot drift), with its parameters inlined. Each client walks its own slice of the seeded messages and sends
 * each message SENT, DELIVERED and READ in turn, so every transaction is real work, not a duplicate.
 */
export function pgbenchScript(): string {
  const statement = APPLY_NEW_EVENTS.replace(/\$(\d+)/g, (_, index: string) => {
    const expression = PARAMETERS[index];
    if (!expression) throw new Error(`no pgbench expression for parameter $${index}`);
    return expression;
  });
  return [
    "\\set k :k + 1",
    "\\set m :first + :client_id * :per_client + (:k / 3) % :per_client",
    "\\set step :k % 3 + 1",
    `${statement};`,
    "",
  ].join("\n");
}

/**
 * The ceiling: the least database work one single-status webhook needs, in one transaction — a conditional
 * UPDATE of the message (only if the status is newer) and the INSERT of its event. Same walk as above.
 */
export function minimalWebhookScript(): string {
  const status = "(ARRAY['SENT', 'DELIVERED', 'READ'])[:step]::message_status";
  return [
    "\\set k :k + 1",
    "\\set m :first + :client_id * :per_client + (:k / 3) % :per_client",
    "\\set step :k % 3 + 1",
    "BEGIN;",
    `UPDATE messages SET status = ${status}, updated_at = now() WHERE uuid = 'bench-' || :m AND status < ${status};`,
    `INSERT INTO message_events (uuid, status, outcome, occurred_at, source, payload) VALUES ('bench-' || :m, ${status}, 'applied', now(), 'webhook', '{"uuid": "bench-0"}') ON CONFLICT (uuid, status) DO NOTHING;`,
    "END;",
    "",
  ].join("\n");
}

/** A point read of one message with its events, as GET /v1/messages/:uuid reads it (team `default`). */
export function pointSelectScript(findMessageSql: string, first: number, count: number): string {
  return [
    `\\set m random(${first}, ${first + count - 1})`,
    `${findMessageSql.replace("$1", "'bench-' || :m").replaceAll("$2", "'default'")};`,
    "",
  ].join("\n");
}

export interface PgbenchResult {
  tps: number;
  latencyAverageMs: number;
  transactions: number;
  failed: number;
  /** True when clients ran past their slice and started repeating (duplicates: cheaper work). */
  wrapped: boolean;
}

export async function runPgbench(options: {
  databaseUrl: string;
  scriptPath: string;
  /** The script to run; default: the service's own statement (`pgbenchScript`). */
  script?: string;
  first: number;
  count: number;
  clients: number;
  seconds: number;
  mode?: "simple" | "extended" | "prepared";
}): Promise<PgbenchResult> {
  await writeFile(options.scriptPath, options.script ?? pgbenchScript());
  const perClient = Math.floor(options.count / options.clients);
  const url = new URL(options.databaseUrl);
  const { stdout } = await run(
    PGBENCH,
    [
      ...["-h", url.hostname, "-p", url.port || "5432", "-U", decodeURIComponent(url.username || "postgres")],
      ...["-c", String(options.clients), "-j", "2", "-T", String(options.seconds), "-n"],
      ...["-M", options.mode ?? "simple", "-f", options.scriptPath],
      ...["-D", `first=${options.first}`, "-D", `per_client=${perClient}`, "-D", "k=-1"],
      url.pathname.slice(1),
    ],
    { maxBuffer: 16 * 1024 * 1024 },
  );
  const number = (pattern: RegExp) => Number(pattern.exec(stdout)?.[1] ?? Number.NaN);
  const transactions = number(/number of transactions actually processed: (\d+)/);
  return {
    tps: number(/tps = ([\d.]+) \(without initial connection time\)/),
    latencyAverageMs: number(/latency average = ([\d.]+) ms/),
    transactions,
    failed: number(/number of failed transactions: (\d+)/) || 0,
    wrapped: transactions > perClient * options.clients * 3,
  };
}
