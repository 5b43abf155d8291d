/**
 * `npm run bench:callbacks`: what status callbacks cost and how fast they go out, against a fresh database on
 * the real PostgreSQL server and a local receiver.
 * 1. The outbox's cost on the write path: the same status UPDATE of BENCH_MESSAGES messages, one statement
 *    per message from BENCH_CONNECTIONS connections, without any endpoint and with one endpoint registered
 *    (the trigger then writes one delivery row per change).
 * 2. Delivery rate: one worker (the service's own, 64 slots) drains those deliveries to a receiver that
 *    answers 204 at once.
 * Settings: BENCH_MESSAGES (default 5000), BENCH_CONNECTIONS (16), BENCH_ADMIN_DATABASE_URL.
 */
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import pg from "pg";
import { addEndpoint } from "../src/callbacks/repository.ts";
import { createCallbackWorker } from "../src/callbacks/worker.ts";
import { createLogger } from "../src/http/logging.ts";
import { createBenchDatabase, seedMessages } from "./database.ts";

const MESSAGES = Number(process.env.BENCH_MESSAGES ?? 5000);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 16);
const ADMIN_URL = process.env.BENCH_ADMIN_DATABASE_URL ?? "postgresql://postgres@127.0.0.1:5432/postgres";

/** Moves every seeded message PENDING -> `status`, one UPDATE per message over CONNECTIONS connections. */
async function updateAll(pool: pg.Pool, status: string): Promise<number> {
  let next = 1;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: CONNECTIONS }, async () => {
      for (let n = next++; n <= MESSAGES; n = next++) {
        await pool.query({
          name: "bench_update_status",
          text: "UPDATE messages SET status = $2, updated_at = now() WHERE uuid = $1 AND status <> $2",
          values: [`bench-${n}`, status],
        });
      }
    }),
  );
  return MESSAGES / ((performance.now() - started) / 1000);
}

const db = await createBenchDatabase(ADMIN_URL);
const pool = new pg.Pool({ connectionString: db.url, max: CONNECTIONS });
pool.on("error", () => {}); // the final DROP ... WITH (FORCE) ends connections still idle here
let received = 0;
const receiver = createServer((req, res) => {
  req.resume();
  req.on("end", () => {
    received++;
    res.writeHead(204).end();
  });
});
try {
  await seedMessages(pool, 1, MESSAGES, new Date());
  const withoutEndpoint = await updateAll(pool, "SENT");
  await pool.query("UPDATE messages SET status = 'PENDING'");
  await new Promise<void>((resolve) => receiver.listen(0, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/status`;
  await addEndpoint(pool, { team: "default", url, events: ["message.status"] });
  await pool.query("DELETE FROM callback_deliveries");
  const withEndpoint = await updateAll(pool, "SENT");

  const worker = createCallbackWorker({
    pool,
    logger: createLogger("silent"),
    masterSecret: "bench-callbacks-secret-bench-callbacks-secret",
    allowPrivate: true,
    pollMs: 50,
  });
  const started = performance.now();
  worker.start();
  while (received < MESSAGES) await new Promise((resolve) => setTimeout(resolve, 20));
  const deliveryRate = MESSAGES / ((performance.now() - started) / 1000);
  await worker.stop();

  const row = (name: string, value: string) => console.log(`${name.padEnd(52)} ${value}`);
  row("status updates/s, no endpoint", withoutEndpoint.toFixed(0));
  row("status updates/s, one endpoint (outbox row)", withEndpoint.toFixed(0));
  row("outbox cost on the update", `${((1 - withEndpoint / withoutEndpoint) * 100).toFixed(1)} %`);
  row("callbacks delivered/s (one worker, local receiver)", deliveryRate.toFixed(0));
} finally {
  receiver.close();
  await pool.end();
  await db.drop();
}
