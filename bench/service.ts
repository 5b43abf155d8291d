import { type ChildProcess, spawn } from "node:child_process";
import { readFile } from "node:fs/promises";
import { createServer } from "node:net";
import path from "node:path";

export const ROOT = path.resolve(import.meta.dirname, "..");
export const WEBHOOK_SECRET = "bench-webhook-secret";
export const API_KEY = "bench-api-key";

// USER_HZ: 100 on every Linux this runs on (getconf CLK_TCK).
const CLOCK_TICKS = 100;

export interface Service {
  url: string;
  pid: number;
  /** Peak resident set size so far (VmHWM), in MiB. */
  peakRssMiB(): Promise<number>;
  /** CPU time (user + system) the process has used so far, in seconds. */
  cpuSeconds(): Promise<number>;
  /** The main (event loop) thread's time on a CPU and time runnable but waiting for one, in seconds. */
  schedule(): Promise<{ running: number; waiting: number }>;
  stop(): Promise<void>;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/**
 * Starts `dist/server.js` as its own node process (so the pid is the server itself).
 * Betatel credentials point at a closed local port: not sandbox mode, and nothing here sends messages.
 */
export async function startService(options: {
  databaseUrl: string;
  poolSize: number;
  env?: Record<string, string>;
  nodeArgs?: string[];
}): Promise<Service> {
  const port = await freePort();
  const child: ChildProcess = spawn(
    process.execPath,
    // What production runs: the compiled service (`npm run bench` builds it first).
    [...(options.nodeArgs ?? []), "dist/server.js"],
    {
      cwd: ROOT,
      stdio: ["ignore", "inherit", "inherit"],
      env: {
        ...process.env,
        NODE_ENV: "production",
        VERIFY_SECRET: "test-verify-secret-test-verify-secret-0123",
        PORT: String(port),
        DATABASE_URL: options.databaseUrl,
        DATABASE_POOL_SIZE: String(options.poolSize),
        LOG_LEVEL: "warn",
        BETATEL_BASE_URL: "http://127.0.0.1:9",
        BETATEL_API_KEY: "bench",
        BETATEL_ACCOUNT_ID: "bench",
        WEBHOOK_SECRET,
        WATCH_SECRET: "bench-watch-secret-0123456789abcdef0123",
        API_KEYS: API_KEY,
        RECONCILE_INTERVAL_MS: "0",
        // Status callbacks: the callback phases register an endpoint on loopback.
        CALLBACKS_SECRET: "bench-callbacks-secret-0123456789abcdef",
        CALLBACKS_ALLOW_PRIVATE: "true",
        // Off while the load runs: the callback phases measure the outbox's cost on ingest, the drain after them
        // measures delivery on its own.
        CALLBACKS_POLL_MS: "0",
        ...options.env,
      },
    },
  );
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`the service exited with code ${child.exitCode} during start`);
    try {
      if ((await fetch(`${url}/readyz`)).ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error("the service did not become ready within 30 s");
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return watchProcess(child, url, exited);
}

/** The figures the bench reads of a process it started (/proc), and how to stop it. */
function watchProcess(child: ChildProcess, url: string, exited: Promise<number | null>): Service {
  const pid = child.pid as number;
  return {
    url,
    pid,
    async peakRssMiB() {
      const status = await readFile(`/proc/${pid}/status`, "utf8");
      const kib = Number(/VmHWM:\s+(\d+)\s+kB/.exec(status)?.[1] ?? Number.NaN);
      return kib / 1024;
    },
    async cpuSeconds() {
      // Fields 14 and 15 of /proc/<pid>/stat (after the parenthesised name): utime and stime, in clock ticks.
      const fields = (await readFile(`/proc/${pid}/stat`, "utf8")).replace(/^.*\) /, "").split(" ");
      return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
    },
    async schedule() {
      const [running, waiting] = (await readFile(`/proc/${pid}/schedstat`, "utf8")).split(" ").map(Number);
      return { running: (running ?? Number.NaN) / 1e9, waiting: (waiting ?? Number.NaN) / 1e9 };
    },
    async stop() {
      if (child.exitCode !== null) return;
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** Starts the baseline peer (bench/baseline-peer.ts) on its own port, over the same database. */
export async function startPeer(databaseUrl: string, nodeArgs: string[] = []): Promise<Service> {
  const port = await freePort();
  const child = spawn(
    process.execPath,
    [...nodeArgs, "--import", "tsx", "bench/baseline-peer.ts", databaseUrl, String(port), WEBHOOK_SECRET, API_KEY],
    { cwd: ROOT, stdio: ["ignore", "pipe", "inherit"] },
  );
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  await new Promise<void>((resolve, reject) => {
    child.stdout?.on("data", (chunk: Buffer) => {
      if (chunk.toString().includes("listening")) resolve();
    });
    child.once("exit", (code) => reject(new Error(`the baseline peer exited with code ${code}`)));
  });
  return watchProcess(child, `http://127.0.0.1:${port}`, exited);
}
