/**
 * Replays the Dockerfile without a Docker daemon, so CI checks what the image would do:
 *   1. clones the repository's HEAD into a temp directory (a clean clone: committed files only);
 *   2. build stage: copies what its COPY lines name into a build directory, exports its ENV, runs its RUN lines;
 *   3. runtime stage: assembles what its `COPY --from=build` lines name into a runtime directory owned by root;
 *   4. runs its CMD there as `nobody` (the image's USER is not root; the code is not writable to it), with the
 *      stage's ENV plus REPLAY_ENV_* (e.g. REPLAY_ENV_DATABASE_URL) and a free PORT, and runs its HEALTHCHECK
 *      command until it passes; then SIGTERM, expecting exit code 0.
 * Run as root with the node that the image would use first on PATH: `node scripts/replay-dockerfile.ts`.
 */
import { execSync, spawn, spawnSync } from "node:child_process";
import { chmodSync, cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";

const ROOT = path.resolve(import.meta.dirname, "..");
const NOBODY = { uid: 65534, gid: 65534 };

const lines = readFileSync(path.join(ROOT, "Dockerfile"), "utf8")
  .split("\n")
  .filter((line) => line.trim() !== "" && !line.startsWith("#"));
const stages = lines.reduce<string[][]>((all, line) => {
  if (line.startsWith("FROM ")) all.push([]);
  else all.at(-1)?.push(line);
  return all;
}, []);
const [buildStage, runtimeStage] = stages;
if (stages.length !== 2 || !buildStage || !runtimeStage) throw new Error("expected two stages (build, runtime)");

const argsOf = (line: string) => line.slice(line.indexOf(" ") + 1).trim();
/** `ENV A=1 B=2` (no spaces inside values, as the Dockerfile keeps them). */
const envOf = (stage: string[]) =>
  Object.fromEntries(
    stage
      .filter((line) => line.startsWith("ENV "))
      .flatMap((line) => argsOf(line).split(/\s+/))
      .map((pair) => pair.split("=", 2) as [string, string]),
  );
const execForm = (stage: string[], instruction: string) => {
  const line = stage.find((candidate) => candidate.startsWith(`${instruction} `));
  if (!line) throw new Error(`no ${instruction}`);
  const json = line.slice(line.indexOf("["));
  return JSON.parse(json) as string[];
};

const work = mkdtempSync(path.join(tmpdir(), "otp-image-"));
chmodSync(work, 0o755);
const clone = path.join(work, "clone");
const build = path.join(work, "build");
const runtime = path.join(work, "app");
const step = (what: string) => console.log(`\n== ${what}`);

let exitCode = 1;
let server: ReturnType<typeof spawn> | undefined;
try {
  step(`git clone ${ROOT} (HEAD ${execSync("git rev-parse --short HEAD", { cwd: ROOT }).toString().trim()})`);
  execSync(`git clone --quiet "${ROOT}" "${clone}"`, { stdio: "inherit" });
  mkdirSync(build);

  const buildEnv = { ...process.env, ...envOf(buildStage) };
  for (const line of buildStage) {
    if (line.startsWith("COPY ")) {
      const parts = argsOf(line).split(/\s+/);
      const dest = parts.pop() ?? ".";
      for (const source of parts) {
        const target = dest.endsWith("/") ? path.join(build, dest, path.basename(source)) : path.join(build, dest);
        cpSync(path.join(clone, source), target, { recursive: true });
      }
    } else if (line.startsWith("RUN ")) {
      step(`RUN ${argsOf(line)}`);
      execSync(argsOf(line), { cwd: build, env: buildEnv, stdio: "inherit" });
    }
  }

  step("runtime stage: COPY --from=build");
  mkdirSync(runtime);
  for (const line of runtimeStage.filter((candidate) => candidate.startsWith("COPY "))) {
    const match = /^COPY --from=build \/app\/(\S+) \.\/(\S+)$/.exec(line);
    if (!match?.[1] || !match[2]) throw new Error(`unexpected runtime COPY: ${line}`);
    cpSync(path.join(build, match[1]), path.join(runtime, match[2]), { recursive: true });
  }
  console.log(execSync("du -sh node_modules dist", { cwd: runtime }).toString().trim());
  const user = runtimeStage.find((line) => line.startsWith("USER "));
  if (!user || argsOf(user) === "root") throw new Error("the runtime stage must set a non-root USER");

  const port = await freePort();
  const replayEnv = Object.fromEntries(
    Object.entries(process.env)
      .filter(([key]) => key.startsWith("REPLAY_ENV_"))
      .map(([key, value]) => [key.slice("REPLAY_ENV_".length), value ?? ""]),
  );
  const runEnv = { PATH: process.env.PATH ?? "", ...envOf(runtimeStage), ...replayEnv, PORT: String(port) };

  const writable = spawnSync("sh", ["-c", "touch dist/x || exit 0; exit 1"], { cwd: runtime, ...NOBODY });
  if (writable.status !== 0) throw new Error("the runtime user can write the code");

  const [command, ...args] = execForm(runtimeStage, "CMD");
  step(`CMD ${[command, ...args].join(" ")} (as nobody, PORT=${port})`);
  server = spawn(command ?? "node", args, { cwd: runtime, env: runEnv, stdio: "inherit", ...NOBODY });
  const exited = new Promise<number | string>((resolve) =>
    server?.on("exit", (code, signal) => resolve(code ?? signal ?? -1)),
  );

  const [healthCommand, ...healthArgs] = execForm(runtimeStage, "HEALTHCHECK");
  step("HEALTHCHECK until it passes (30 s at most)");
  let healthy = false;
  for (let attempt = 0; attempt < 60 && !healthy && server.exitCode === null; attempt++) {
    await new Promise((resolve) => setTimeout(resolve, 500));
    const probe = spawnSync(healthCommand ?? "node", healthArgs, { cwd: runtime, env: runEnv, ...NOBODY });
    healthy = probe.status === 0;
  }
  if (!healthy) throw new Error("the HEALTHCHECK never passed");
  console.log("healthy");

  server.kill("SIGTERM");
  const code = await exited;
  if (code !== 0) throw new Error(`after SIGTERM the server ended with ${String(code)}`);
  console.log("SIGTERM: exit code 0. Replay passed.");
  exitCode = 0;
} catch (error) {
  console.error(`replay failed: ${(error as Error).message}`);
} finally {
  server?.kill("SIGKILL");
  if (!process.env.KEEP_REPLAY_DIR) rmSync(work, { recursive: true, force: true });
}
process.exit(exitCode);

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.listen(0, "127.0.0.1", () => {
      const address = probe.address();
      probe.close(() => (typeof address === "object" && address ? resolve(address.port) : reject(new Error("port"))));
    });
  });
}
