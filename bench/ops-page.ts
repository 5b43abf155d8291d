/**
 * Server time of the ops page's data (GET /ops/api/overview) on a large table: a fresh database on the
 * PostgreSQL server (DATABASE_ADMIN_URL, default the local one), MESSAGES messages (default 1,000,000) over
 * DAYS days (default 30) with their events, ANALYZEd; then each window is read RUNS times through the real
 * app on loopback. Prints the median and the slowest per window. Not part of the test suite:
 *   npx tsx bench/ops-page.ts
 */
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { createApp } from "../src/app.ts";
import { createSandboxBetatel } from "../src/betatel/sandbox.ts";
import { loadConfig } from "../src/config.ts";
import { openDatabase } from "../src/db/database.ts";
import { createLogger } from "../src/http/logging.ts";
import { seedOpsHistory } from "../test/support/ops-seed.ts";
import { createBenchDatabase } from "./database.ts";

const adminUrl = process.env.DATABASE_ADMIN_URL ?? "postgresql://postgres@127.0.0.1:5432/postgres";
const messages = Number(process.env.MESSAGES ?? 1_000_000);
const days = Number(process.env.DAYS ?? 30);
const runs = Number(process.env.RUNS ?? 7);

const bench = await createBenchDatabase(adminUrl);
try {
  let started = performance.now();
  await seedOpsHistory(bench.pool, { count: messages, spanHours: days * 24 });
  await bench.pool.query("VACUUM ANALYZE messages");
  await bench.pool.query("VACUUM ANALYZE message_events");
  console.log(`seeded ${messages.toLocaleString("en-US")} messages over ${days} days in ${elapsed(started)}`);

  const config = loadConfig({ NODE_ENV: "test", DATABASE_URL: bench.url, LOG_LEVEL: "silent" });
  const logger = createLogger("silent");
  const db = await openDatabase({ url: bench.url, dataDir: "", poolSize: 10 });
  const betatel = createSandboxBetatel({
    webhookUrl: () => "http://127.0.0.1:9/",
    webhookSecret: undefined,
    signingSecret: undefined,
    stepMs: 0,
    failureRate: 0,
    logger,
  });
  const server = createServer(createApp({ config, db, betatel, logger })).listen(0, "127.0.0.1");
  await new Promise((resolve) => server.once("listening", resolve));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  for (const window of ["1h", "24h", "7d"]) {
    const times: number[] = [];
    for (let i = 0; i < runs; i++) {
      started = performance.now();
      const res = await fetch(`${base}/ops/api/overview?window=${window}`);
      const body = (await res.json()) as { totals: { all: number } };
      if (res.status !== 200) throw new Error(`${window}: ${res.status} ${JSON.stringify(body)}`);
      times.push(performance.now() - started);
      if (i === 0) console.log(`${window}: ${body.totals.all.toLocaleString("en-US")} messages in the window`);
    }
    times.sort((a, b) => a - b);
    console.log(
      `${window}: median ${times[Math.floor(runs / 2)]?.toFixed(0)} ms, slowest ${times.at(-1)?.toFixed(0)} ms (${runs} runs)`,
    );
  }
  server.close();
  await db.close();
} finally {
  await bench.drop();
}

function elapsed(started: number) {
  return `${((performance.now() - started) / 1000).toFixed(1)} s`;
}
