/**
 * `npm run bench`: the webhook ingest and read path against a fresh database on the real PostgreSQL server,
 * next to the database's own ceiling (pgbench running the same SQL), then a check of every stored row.
 * Settings (environment): BENCH_MESSAGES (messages per phase, default 20000), BENCH_SECONDS (per phase, 12),
 * BENCH_CONNECTIONS (32), DATABASE_POOL_SIZE (of each service instance, default below),
 * BENCH_PHASES (comma list of single,duplicates,peer,batch,callbacks,read,pgbench,two; default all), BENCH_CPU_PROF=1 (profile the server),
 * BENCH_NODE_ARGS (extra node flags for the service, e.g. "--max-semi-space-size=4"),
 * BENCH_ADMIN_DATABASE_URL (default postgresql://postgres@127.0.0.1:5432/postgres).
 */
import { execFile, spawn } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { cpus, tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { addEndpoint } from "../src/callbacks/repository.ts";
import { FIND_MESSAGE } from "../src/messages/repository.ts";
import type { Status } from "../src/tracking/status.ts";
import { BASELINE_FUNCTION } from "./baseline-peer.ts";
import { type BenchDatabase, createBenchDatabase, type Sent, seedMessages, verify } from "./database.ts";
import { ACKED, type LoadJob, type LoadResult, SENT } from "./load-job.ts";
import { countPostgresOf, type MachineCost, measureCost } from "./machine-cpu.ts";
import { minimalWebhookScript, type PgbenchResult, pointSelectScript, runPgbench } from "./pgbench.ts";
import { API_KEY, ROOT, type Service, startPeer, startService, WEBHOOK_SECRET } from "./service.ts";
import { arrivals, countOutOfOrder, type Delivery, type History, histories, random, retryStorm } from "./workload.ts";

const env = process.env;
const MESSAGES = Number(env.BENCH_MESSAGES ?? 20_000);
const SECONDS = Number(env.BENCH_SECONDS ?? 12);
const CONNECTIONS = Number(env.BENCH_CONNECTIONS ?? 32);
// The service's own default (src/config.ts); 4, 8, 16 and 32 measured the same within noise (docs/performance.md).
const POOL_SIZE = Number(env.DATABASE_POOL_SIZE ?? 10);
// The heap flags `npm run serve` and the Dockerfile start the service with: the bench measures what ships.
const NODE_ARGS = (env.BENCH_NODE_ARGS ?? "--max-old-space-size=160 --max-semi-space-size=4")
  .split(" ")
  .filter(Boolean);
const BATCH = 100;
const PHASES = new Set((env.BENCH_PHASES ?? "single,duplicates,peer,batch,callbacks,read,pgbench,two").split(","));
const ADMIN_URL = env.BENCH_ADMIN_DATABASE_URL ?? "postgresql://postgres@127.0.0.1:5432/postgres";
const RESULTS_DIR = path.join(ROOT, "bench/results");
const SEED = Number(env.BENCH_SEED ?? 20261127);

interface PhaseFigures extends Partial<MachineCost> {
  name: string;
  unit: string;
  throughput: number;
  p50Ms: number;
  p99Ms: number;
  seconds: number;
  requests: number;
  statuses?: number;
  outOfOrder?: number;
  duplicatesSent?: number;
  /** Service CPU time per request (all instances), a figure less noisy than throughput on a busy machine. */
  cpuMsPerRequest?: number;
  /** The load generator's CPU time per request (its whole process, including start-up). */
  loadCpuMsPerRequest?: number;
  /** Share of the phase the service's event-loop thread ran, and spent runnable but waiting for a CPU. */
  eventLoopRunning?: number;
  eventLoopWaitingForCpu?: number;
}

const cpuOf = async (services: Service[]) =>
  (await Promise.all(services.map((s) => s.cpuSeconds()))).reduce((a, b) => a + b, 0);

/** Measures the first service's scheduling around `work`: how much of the time it ran or waited for a CPU. */
async function scheduled<T>(
  service: Service,
  work: () => Promise<T>,
): Promise<[T, { running: number; waiting: number }]> {
  const before = await service.schedule();
  const started = performance.now();
  const result = await work();
  const after = await service.schedule();
  const seconds = (performance.now() - started) / 1000;
  return [
    result,
    { running: (after.running - before.running) / seconds, waiting: (after.waiting - before.waiting) / seconds },
  ];
}

const rand = random(SEED);
const createdAt = new Date(Date.now() - 60_000);
const scratch = await mkdtemp(path.join(tmpdir(), "otp-bench-"));

async function runLoad(job: LoadJob): Promise<LoadResult> {
  const id = Math.random().toString(36).slice(2);
  const jobPath = path.join(scratch, `job-${id}.json`);
  const resultPath = path.join(scratch, `result-${id}.json`);
  await writeFile(jobPath, JSON.stringify(job));
  const child = spawn(process.execPath, ["--import", "tsx", "bench/load.ts", jobPath, resultPath], {
    cwd: ROOT,
    stdio: ["ignore", "inherit", "inherit"],
  });
  const code = await new Promise<number | null>((resolve) => child.once("exit", resolve));
  if (code !== 0) throw new Error(`the load generator exited with code ${code}`);
  return JSON.parse(await readFile(resultPath, "utf8")) as LoadResult;
}

/** Records, per message, which of its statuses were sent and acknowledged (for the final verification). */
function record(sent: Map<number, Sent>, deliveries: Delivery[], stateOf: (index: number) => number): void {
  deliveries.forEach((delivery, index) => {
    const state = stateOf(index);
    if (state < SENT) return;
    const entry = sent.get(delivery.n) ?? { acked: new Set<Status>(), unanswered: new Set<Status>(), order: [] };
    if (!entry.order.includes(delivery.status)) entry.order.push(delivery.status);
    if (state === ACKED) entry.acked.add(delivery.status);
    else entry.unanswered.add(delivery.status);
    sent.set(delivery.n, entry);
  });
}

const webhookHeaders = { "content-type": "application/json", "x-webhook-secret": WEBHOOK_SECRET };

/** Sends `deliveries` to the targets, `perRequest` statuses per request (1: the single object shape). */
async function webhookPhase(
  name: string,
  services: Service[],
  deliveries: Delivery[],
  perRequest: number,
  sent: Map<number, Sent>,
): Promise<PhaseFigures> {
  const requests: LoadJob["requests"] = [];
  for (let i = 0; i < deliveries.length; i += perRequest) {
    const items = deliveries.slice(i, i + perRequest).map((d) => d.item);
    requests.push({ path: "/webhooks/betatel", body: JSON.stringify(perRequest === 1 ? items[0] : items) });
  }
  const cpuBefore = await cpuOf(services);
  const [[result, schedule], cost] = await measureCost(
    () =>
      scheduled(services[0] as Service, () =>
        runLoad({
          targets: services.map((s) => s.url),
          method: "POST",
          headers: webhookHeaders,
          requests,
          connections: CONNECTIONS,
          durationSeconds: SECONDS,
          cycle: false,
        }),
      ),
    ([load]) => load.answered,
  );
  const cpuMsPerRequest = (((await cpuOf(services)) - cpuBefore) * 1000) / Math.max(1, result.answered);
  const states = Buffer.from(result.states, "base64");
  record(sent, deliveries, (index) => states[Math.floor(index / perRequest)] ?? 0);
  if (result.non2xx > 0 || result.errors > 0) {
    throw new Error(`${name}: ${result.non2xx} non-2xx answers and ${result.errors} errors`);
  }
  const ackedStatuses = deliveries.filter((_, index) => states[Math.floor(index / perRequest)] === ACKED).length;
  const sentDeliveries = deliveries.filter((_, index) => (states[Math.floor(index / perRequest)] ?? 0) >= SENT);
  const unique = new Set(sentDeliveries.map((d) => `${d.n}/${d.status}`)).size;
  return {
    name,
    unit: perRequest === 1 ? "requests/s" : "statuses/s",
    throughput: (perRequest === 1 ? result.answered : ackedStatuses) / result.elapsedSeconds,
    p50Ms: result.latencyMs.p50,
    p99Ms: result.latencyMs.p99,
    seconds: result.elapsedSeconds,
    requests: result.answered,
    statuses: ackedStatuses,
    outOfOrder: countOutOfOrder(sentDeliveries),
    duplicatesSent: sentDeliveries.length - unique,
    cpuMsPerRequest,
    loadCpuMsPerRequest: (result.cpuSeconds * 1000) / Math.max(1, result.answered),
    eventLoopRunning: schedule.running,
    eventLoopWaitingForCpu: schedule.waiting,
    ...cost,
  };
}

async function readPhase(name: string, service: Service, messages: History[]): Promise<PhaseFigures> {
  const order = [...messages];
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [order[i], order[j]] = [order[j] as History, order[i] as History];
  }
  const cpuBefore = await service.cpuSeconds();
  const [[result, schedule], cost] = await measureCost(
    () =>
      scheduled(service, () =>
        runLoad({
          targets: [service.url],
          method: "GET",
          headers: { "x-api-key": API_KEY },
          requests: order.map((m) => ({ path: `/v1/messages/${m.uuid}` })),
          connections: CONNECTIONS,
          durationSeconds: SECONDS,
          cycle: true,
        }),
      ),
    ([load]) => load.answered,
  );
  const cpuMsPerRequest = (((await service.cpuSeconds()) - cpuBefore) * 1000) / Math.max(1, result.answered);
  if (result.non2xx > 0 || result.errors > 0) {
    throw new Error(`read: ${result.non2xx} non-2xx answers and ${result.errors} errors`);
  }
  return {
    name,
    unit: "requests/s",
    throughput: result.answered / result.elapsedSeconds,
    p50Ms: result.latencyMs.p50,
    p99Ms: result.latencyMs.p99,
    seconds: result.elapsedSeconds,
    requests: result.answered,
    cpuMsPerRequest,
    loadCpuMsPerRequest: (result.cpuSeconds * 1000) / Math.max(1, result.answered),
    eventLoopRunning: schedule.running,
    eventLoopWaitingForCpu: schedule.waiting,
    ...cost,
  };
}

const SINGLE = "webhook, 1 status/request";
const DUPLICATES = "webhook, 1 status/request, retry storm (duplicates)";
const PEER = "baseline peer, 1 status/request";
const BATCHED = `webhook, ${BATCH} statuses/request`;
const SINGLE_CALLBACKS = "webhook, 1 status/request, one callback endpoint";
const BATCHED_CALLBACKS = `webhook, ${BATCH} statuses/request, one callback endpoint`;
const READ = "GET /v1/messages/:uuid";
const PEER_READ = "baseline peer, GET /v1/messages/:uuid";
const TWO = "webhook, 1 status/request, 2 instances";
const CEILING = "ceiling: UPDATE + INSERT in one transaction, -M prepared";
const POINT_READ = "GET's query, -M prepared";

/** Starts a delivering instance and times how long it takes to deliver every queued callback. */
async function drainCallbacks(
  database: BenchDatabase,
  receiver: Awaited<ReturnType<typeof startReceiver>>,
  start: () => Promise<Service>,
): Promise<{ delivered: number; perSecond: number }> {
  const { rows } = await database.pool.query<{ n: number }>(
    "SELECT count(*)::int AS n FROM callback_deliveries WHERE status = 'pending'",
  );
  const queued = rows[0]?.n ?? 0;
  const before = receiver.received();
  const service = await start();
  const started = performance.now();
  try {
    const deadline = Date.now() + 120_000;
    while (receiver.received() - before < queued && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  } finally {
    await service.stop();
  }
  const delivered = receiver.received() - before;
  return { delivered, perSecond: delivered / ((performance.now() - started) / 1000) };
}

/** A product team's callback receiver on loopback: answers 204 at once and counts what it got. */
async function startReceiver() {
  let received = 0;
  const server = createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      received++;
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/otp-status`,
    received: () => received,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

const pct = (share: number | undefined) => (share === undefined ? "-" : `${(share * 100).toFixed(0)}%`);
const fmt = (value: number | undefined, digits = 0) =>
  value === undefined || Number.isNaN(value) ? "-" : value.toFixed(digits);

async function main() {
  const started = Date.now();
  const execFileAsync = promisify(execFile);
  const gitCommit = await execFileAsync("git", ["rev-parse", "--short", "HEAD"], { cwd: ROOT })
    .then((r) => r.stdout.trim())
    .catch(() => "unknown");
  console.log(
    `bench: ${MESSAGES} messages per phase, ${SECONDS} s phases, ${CONNECTIONS} connections, pool ${POOL_SIZE}`,
  );
  let database: BenchDatabase | undefined;
  const services: Service[] = [];
  try {
    database = await createBenchDatabase(ADMIN_URL);
    const sets = {
      single: histories(1, MESSAGES, createdAt, rand),
      batch: histories(MESSAGES + 1, MESSAGES * 2, createdAt, rand),
      pgbench: { first: MESSAGES * 3 + 1, count: MESSAGES * 2 },
      pgbenchPrepared: { first: MESSAGES * 5 + 1, count: MESSAGES * 2 },
      two: histories(MESSAGES * 7 + 1, MESSAGES, createdAt, rand),
      ceiling: { first: MESSAGES * 8 + 1, count: MESSAGES * 2 },
      peer: histories(MESSAGES * 10 + 1, MESSAGES, createdAt, rand),
      singleWithCallbacks: histories(MESSAGES * 11 + 1, MESSAGES, createdAt, rand),
      batchWithCallbacks: histories(MESSAGES * 12 + 1, MESSAGES * 2, createdAt, rand),
    };
    const seeded = MESSAGES * 14;
    await seedMessages(database.pool, 1, seeded, createdAt);
    await database.pool.query(BASELINE_FUNCTION);
    await database.pool.query("VACUUM ANALYZE messages");
    await database.pool.query("VACUUM ANALYZE message_events");
    console.log(`database ${database.name}: ${seeded} messages seeded`);
    countPostgresOf(database.name);

    const profileDir = path.join(RESULTS_DIR, "profiles");
    if (env.BENCH_CPU_PROF) await mkdir(profileDir, { recursive: true });
    const start = () =>
      startService({
        databaseUrl: database?.url as string,
        poolSize: POOL_SIZE,
        nodeArgs: [...NODE_ARGS, ...(env.BENCH_CPU_PROF ? ["--cpu-prof", "--cpu-prof-dir", profileDir] : [])],
      });
    const first = await start();
    services.push(first);

    const sent = new Map<number, Sent>();
    const phases: PhaseFigures[] = [];
    let callbacks: { delivered: number; perSecond: number } | undefined;
    const step = (label: string) => console.log(`[${((Date.now() - started) / 1000).toFixed(0)} s] ${label}`);
    if (PHASES.has("single")) {
      step("1. single-status webhooks");
      phases.push(await webhookPhase(SINGLE, [first], arrivals(sets.single, rand), 1, sent));
    }
    if (PHASES.has("duplicates")) {
      // After phase 1 these statuses are all known: a provider's retry storm, nearly every one a duplicate.
      step("1b. single-status webhooks, a retry storm (duplicates)");
      const storm = retryStorm(sets.single, MESSAGES * 3, Math.min(3000, MESSAGES), rand);
      phases.push(await webhookPhase(DUPLICATES, [first], storm, 1, sent));
    }
    if (PHASES.has("peer")) {
      step("1c. the baseline peer (node:http + one prepared call), single-status webhooks");
      const peer = await startPeer(database.url, NODE_ARGS);
      try {
        phases.push(await webhookPhase(PEER, [peer], arrivals(sets.peer, rand), 1, new Map()));
      } finally {
        await peer.stop();
      }
    }
    if (PHASES.has("batch")) {
      step("2. batched webhooks");
      phases.push(await webhookPhase(BATCHED, [first], arrivals(sets.batch, rand), BATCH, sent));
    }
    if (PHASES.has("callbacks")) {
      // The same work with one callback endpoint registered: each status change also writes its outbox row
      // (delivery is off in this instance). Then an instance that delivers drains the queue to a local receiver.
      const receiver = await startReceiver();
      const endpoint = await addEndpoint(database.pool, {
        team: "default",
        url: receiver.url,
        events: ["message.status"],
      });
      try {
        step("2b. single-status webhooks, one callback endpoint");
        phases.push(await webhookPhase(SINGLE_CALLBACKS, [first], arrivals(sets.singleWithCallbacks, rand), 1, sent));
        step("2c. batched webhooks, one callback endpoint");
        phases.push(
          await webhookPhase(BATCHED_CALLBACKS, [first], arrivals(sets.batchWithCallbacks, rand), BATCH, sent),
        );
        step("2d. delivering the queued callbacks");
        callbacks = await drainCallbacks(database, receiver, () =>
          startService({
            databaseUrl: database?.url as string,
            poolSize: POOL_SIZE,
            nodeArgs: NODE_ARGS,
            env: { CALLBACKS_POLL_MS: "50" },
          }),
        );
      } finally {
        await database.pool.query("DELETE FROM callback_endpoints WHERE id = $1", [endpoint.id]);
        await receiver.close();
      }
    }
    if (PHASES.has("read")) {
      step("3. GET /v1/messages/:uuid");
      phases.push(await readPhase(READ, first, sets.single));
      step("3b. the baseline peer's GET (node:http + the same prepared read)");
      const peer = await startPeer(database.url, NODE_ARGS);
      try {
        phases.push(await readPhase(PEER_READ, peer, sets.single));
      } finally {
        await peer.stop();
      }
    }
    const peakRssMiB = await first.peakRssMiB();
    // The database's own figures at the same concurrency. The ceiling is the least a webhook's database work can
    // be (a conditional UPDATE and the event INSERT in one transaction), prepared; the point read is GET's query;
    // the service's own statement, simple and prepared, is extra information.
    const pg: Record<string, PgbenchResult & { cost: MachineCost }> = {};
    if (PHASES.has("pgbench")) {
      const pgbenchPhase = async (
        label: string,
        mode: "simple" | "prepared",
        set: { first: number; count: number },
        script?: string,
      ) => {
        step(`4. pgbench: ${label}`);
        const [result, cost] = await measureCost(
          () =>
            runPgbench({
              databaseUrl: (database as BenchDatabase).url,
              scriptPath: path.join(scratch, "pgbench.sql"),
              script,
              ...set,
              clients: CONNECTIONS,
              seconds: Math.max(SECONDS, 15),
              mode,
            }),
          (r) => r.transactions,
        );
        pg[label] = { ...result, cost };
      };
      await pgbenchPhase(CEILING, "prepared", sets.ceiling, minimalWebhookScript());
      await pgbenchPhase(POINT_READ, "prepared", sets.ceiling, pointSelectScript(FIND_MESSAGE, 1, seeded));
      await pgbenchPhase("the service's statement, -M simple", "simple", sets.pgbench);
      await pgbenchPhase("the service's statement, -M prepared", "prepared", sets.pgbenchPrepared);
    }
    if (PHASES.has("two")) {
      step("5. single-status webhooks, two instances");
      const second = await start();
      services.push(second);
      phases.push(await webhookPhase(TWO, [first, second], arrivals(sets.two, rand), 1, sent));
    }
    for (const service of services.splice(0)) await service.stop();

    step("verifying every message");
    const checked = [
      ...sets.single,
      ...sets.batch,
      ...sets.two,
      ...sets.singleWithCallbacks,
      ...sets.batchWithCallbacks,
    ];
    const problems = await verify(database.pool, checked, sent);
    const eventsPerStatus = await database.pool.query<{ dupes: string }>(
      "SELECT count(*) - count(DISTINCT (uuid, status)) AS dupes FROM message_events",
    );
    if (Number(eventsPerStatus.rows[0]?.dupes) !== 0) problems.push("more than one event for some (uuid, status)");

    const ceiling = pg[CEILING];
    const peerRow = phases.find((p) => p.name === PEER);
    const ratio = (value: number | undefined, base: number | undefined) =>
      value !== undefined && base ? value / base : undefined;
    const rows = phases.map((p) => ({
      ...p,
      ratioToCeiling: ratio(p.throughput, ceiling?.tps),
      ratioToPeer:
        p.name === READ
          ? ratio(p.throughput, phases.find((q) => q.name === PEER_READ)?.throughput)
          : [PEER, PEER_READ, BATCHED].includes(p.name)
            ? undefined
            : ratio(p.throughput, peerRow?.throughput),
    }));
    console.log("");
    console.log(
      "| phase | throughput | unit | p50 ms | p99 ms | machine CPU ms/req | Postgres CPU ms/req | service CPU ms/req | load generator CPU ms/req | event loop on CPU / waiting | x ceiling | x peer |",
    );
    console.log("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (const row of rows) {
      console.log(
        `| ${row.name} | ${fmt(row.throughput)} | ${row.unit} | ${fmt(row.p50Ms, 1)} | ${fmt(row.p99Ms, 1)} | ${fmt(row.machineMsPerRequest, 2)} | ${fmt(row.postgresMsPerRequest, 2)} | ${fmt(row.cpuMsPerRequest, 2)} | ${fmt(row.loadCpuMsPerRequest, 2)} | ${pct(row.eventLoopRunning)} / ${pct(row.eventLoopWaitingForCpu)} | ${fmt(row.ratioToCeiling, 2)} | ${fmt(row.ratioToPeer, 2)} |`,
      );
    }
    for (const [label, result] of Object.entries(pg)) {
      console.log(
        `| pgbench -c ${CONNECTIONS}: ${label} | ${fmt(result.tps)} | transactions/s | avg ${fmt(result.latencyAverageMs, 1)} | - | ${fmt(result.cost.machineMsPerRequest, 2)} | ${fmt(result.cost.postgresMsPerRequest, 2)} | - | - | - | ${fmt(ratio(result.tps, ceiling?.tps), 2)} | - |`,
      );
    }
    console.log(`\nservice peak RSS (VmHWM): ${fmt(peakRssMiB, 1)} MiB; pool size ${POOL_SIZE}`);
    if (callbacks) {
      console.log(
        `status callbacks: ${callbacks.delivered} delivered to a local receiver at ${fmt(callbacks.perSecond)}/s (one instance)`,
      );
    }

    const single = rows.find((r) => r.name === SINGLE);
    const duplicates = rows.find((r) => r.name === DUPLICATES);
    const batch = rows.find((r) => r.name === BATCHED);
    const read = rows.find((r) => r.name === READ);
    const atMost = (value: number | undefined, limit: number | undefined) =>
      value === undefined || limit === undefined ? undefined : value <= limit;
    const atLeast = (value: number | undefined, floor: number | undefined) =>
      value === undefined || floor === undefined ? undefined : value >= floor;
    const targets: Record<string, boolean | undefined> = {
      "single-status >= 0.6x the ceiling": atLeast(single?.ratioToCeiling, 0.6),
      "single-status >= 0.8x the baseline peer": atLeast(single?.ratioToPeer, 0.8),
      "machine CPU per webhook <= 1.5x the peer's": atMost(
        single?.machineMsPerRequest,
        peerRow?.machineMsPerRequest && peerRow.machineMsPerRequest * 1.5,
      ),
      "Postgres CPU per webhook <= 1.5x the peer's": atMost(
        single?.postgresMsPerRequest,
        peerRow?.postgresMsPerRequest && peerRow.postgresMsPerRequest * 1.5,
      ),
      "a duplicate costs <= half an applied status (machine CPU)": atMost(
        duplicates?.machineMsPerRequest,
        single?.machineMsPerRequest && single.machineMsPerRequest / 2,
      ),
      "single-status p99 < 50 ms": single ? single.p99Ms < 50 : undefined,
      "batched statuses/s >= 2x the ceiling": atLeast(batch?.ratioToCeiling, 2),
      "GET >= 0.5x the pgbench point read": atLeast(ratio(read?.throughput, pg[POINT_READ]?.tps), 0.5),
      "peak RSS < 150 MB": peakRssMiB * 1.048576 < 150,
      "with a callback endpoint, single-status >= 0.85x without": atLeast(
        ratio(rows.find((r) => r.name === SINGLE_CALLBACKS)?.throughput, single?.throughput),
        0.85,
      ),
      "with a callback endpoint, batched >= 0.85x without": atLeast(
        ratio(rows.find((r) => r.name === BATCHED_CALLBACKS)?.throughput, batch?.throughput),
        0.85,
      ),
      "callbacks delivered/s >= single-status webhooks/s": atLeast(callbacks?.perSecond, single?.throughput),
    };
    console.log("\ntargets (measured in this run):");
    for (const [target, met] of Object.entries(targets)) {
      console.log(`  ${met === undefined ? "not measured" : met ? "met   " : "MISSED"}  ${target}`);
    }
    const peerReadVsPoint = ratio(phases.find((p) => p.name === PEER_READ)?.throughput, pg[POINT_READ]?.tps);
    if (peerReadVsPoint !== undefined)
      console.log(`  (for scale: the baseline peer's GET reaches ${fmt(peerReadVsPoint, 2)}x the pgbench point read)`);
    if (Object.values(pg).some((result) => result.wrapped))
      console.log("note: pgbench clients ran past their messages (BENCH_MESSAGES too small)");

    const report = {
      at: new Date().toISOString(),
      commit: gitCommit,
      machine: { cpus: cpus().length, cpu: cpus()[0]?.model, node: process.version },
      settings: { messagesPerPhase: MESSAGES, seconds: SECONDS, connections: CONNECTIONS, poolSize: POOL_SIZE },
      phases: rows,
      pgbench: pg,
      peakRssMiB,
      targets,
      verification: { messages: checked.length, problems },
      totalSeconds: (Date.now() - started) / 1000,
    };
    await mkdir(RESULTS_DIR, { recursive: true });
    const file = path.join(RESULTS_DIR, `bench-${report.at.replace(/[:.]/g, "-")}.json`);
    await writeFile(file, `${JSON.stringify(report, null, 2)}\n`);
    console.log(`results: ${path.relative(ROOT, file)}`);

    if (problems.length > 0) {
      console.error(`\nVERIFICATION FAILED (${problems.length} problems shown):\n${problems.join("\n")}`);
      process.exitCode = 1;
    } else {
      console.log(`verified ${checked.length} messages: states, timestamps and one event per (uuid, status)`);
    }
  } finally {
    for (const service of services) await service.stop().catch(() => {});
    await database?.drop().catch((error) => console.error("could not drop the bench database:", error));
    await rm(scratch, { recursive: true, force: true });
  }
}

await main();
