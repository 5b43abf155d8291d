import { type ChildProcess, spawn } from "node:child_process";
import path from "node:path";
import { pathToFileURL } from "node:url";

const ROOT = path.resolve(import.meta.dirname, "../..");
// Absolute, so the server can run in another working directory (where `--import tsx` would not resolve).
const TSX_LOADER = pathToFileURL(path.join(ROOT, "node_modules/tsx/dist/loader.mjs")).href;
const SERVER = path.join(ROOT, "src/server.ts");

export interface SpawnedServer {
  child: ChildProcess;
  url: string;
  /** Everything the process wrote to stdout and stderr so far. */
  output(): string;
  /** Resolves with the exit code (or the signal name) once the process has ended. */
  exited: Promise<number | string>;
  kill(signal?: NodeJS.Signals): void;
}

/**
 * Runs `node --import tsx src/server.ts` (in `cwd`, default the repository) with exactly `env` (plus PATH), as an operator would start it. One
 * process, not the `tsx` wrapper (which forks a child): a signal sent to it reaches the server itself.
 */
export function runServer(
  env: Record<string, string>,
  options: { cwd?: string; nodeFlags?: string[] } = {},
): {
  child: ChildProcess;
  output(): string;
  exited: Promise<number | string>;
} {
  const child = spawn(process.execPath, [...(options.nodeFlags ?? []), "--import", TSX_LOADER, SERVER], {
    cwd: options.cwd ?? ROOT,
    // Most tests share the run's database: the reconciler would claim and the sweep expire other files' old rows,
    // and the abuse limits would count every file's sends together. On where a test asks for them.
    env: {
      PATH: process.env.PATH ?? "",
      PORT: "0",
      LOG_LEVEL: "info",
      RECONCILE_INTERVAL_MS: "0",
      SWEEP_INTERVAL_MS: "0",
      RECIPIENT_LIMITS: "off",
      RATE_LIMIT_PER_MINUTE: "0",
      ...env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let text = "";
  child.stdout?.on("data", (chunk: Buffer) => {
    text += chunk.toString("utf8");
  });
  child.stderr?.on("data", (chunk: Buffer) => {
    text += chunk.toString("utf8");
  });
  const exited = new Promise<number | string>((resolve) => {
    child.on("exit", (code, signal) => resolve(code ?? signal ?? -1));
  });
  return { child, output: () => text, exited };
}

/** The node flags `npm start` and `npm run serve` give the service (its heap size). */
export async function productionNodeFlags(): Promise<string[]> {
  const { readFile } = await import("node:fs/promises");
  const manifest = JSON.parse(await readFile(path.join(ROOT, "package.json"), "utf8")) as {
    scripts: { serve: string };
  };
  return manifest.scripts.serve.split(/\s+/).filter((word) => /^--max-[a-z-]+=\d+$/.test(word));
}

/** Starts the server and waits for its "listening" log line. */
export async function spawnServer(
  env: Record<string, string>,
  timeoutMs = 20_000,
  options: { cwd?: string; nodeFlags?: string[] } = {},
): Promise<SpawnedServer> {
  const run = runServer(env, options);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const match = /"port":(\d+)[^\n]*"msg":"listening"/.exec(run.output());
    if (match) {
      return {
        ...run,
        url: `http://127.0.0.1:${match[1]}`,
        kill: (signal = "SIGTERM") => run.child.kill(signal),
      };
    }
    const done = await Promise.race([run.exited, new Promise((resolve) => setTimeout(() => resolve(undefined), 50))]);
    if (done !== undefined || Date.now() > deadline) {
      run.child.kill("SIGKILL");
      throw new Error(`server did not start (exit ${String(done)}):\n${run.output()}`);
    }
  }
}
