/**
 * Production smoke test of the compiled service: `npm run build`, then `node scripts/smoke.ts` (Node ≥ 22.18 runs
 * TypeScript itself; on Node 20: `npx tsx scripts/smoke.ts`). It starts `dist/server.js` with this same node,
 * configured as production, against a fresh database on the PostgreSQL server (SMOKE_ADMIN_DATABASE_URL, default
 * postgresql://postgres@127.0.0.1:5432/postgres) and a local fake Betatel; sends an OTP, posts a status webhook,
 * reads the message back, then stops it with SIGTERM and expects exit code 0. Exit 1 with the reason otherwise.
 */
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import pg from "pg";
import { startFakeBetatel } from "../test/support/fake-betatel.ts";

const ROOT = path.resolve(import.meta.dirname, "..");
const adminUrl = process.env.SMOKE_ADMIN_DATABASE_URL ?? "postgresql://postgres@127.0.0.1:5432/postgres";
const API_KEY = "smoke-api-key";
const WEBHOOK_SECRET = "smoke-webhook-secret";
const OPS_TOKEN = "smoke-ops-token-smoke-ops-token";

function check(condition: unknown, what: string): asserts condition {
  if (!condition) throw new Error(`smoke failed: ${what}`);
}

const rssMiB = (pid: number) => {
  const line = readFileSync(`/proc/${pid}/status`, "utf8").match(/VmRSS:\s+(\d+) kB/);
  return line ? Math.round(Number(line[1]) / 1024) : undefined;
};

const name = `otp_smoke_${process.pid}_${Date.now()}`;
const admin = new pg.Client({ connectionString: adminUrl });
await admin.connect();
await admin.query(`CREATE DATABASE ${name}`);
const databaseUrl = new URL(adminUrl);
databaseUrl.pathname = `/${name}`;
const fake = await startFakeBetatel();

const child = spawn(
  process.execPath,
  ["--max-old-space-size=160", "--max-semi-space-size=4", path.join(ROOT, "dist/server.js")],
  {
    cwd: ROOT,
    stdio: ["ignore", "pipe", "pipe"],
    env: {
      PATH: process.env.PATH ?? "",
      NODE_ENV: "production",
      PORT: "0",
      DATABASE_URL: databaseUrl.toString(),
      BETATEL_BASE_URL: fake.url,
      BETATEL_API_KEY: "smoke-betatel-key",
      BETATEL_ACCOUNT_ID: "smoke-account",
      API_KEYS: API_KEY,
      WEBHOOK_SECRET,
      VERIFY_SECRET: "smoke-verify-secret-smoke-verify-secret",
      WATCH_SECRET: "smoke-watch-secret-smoke-watch-secret-00",
      RECONCILE_INTERVAL_MS: "0",
      OPS_TOKEN,
    },
  },
);
let output = "";
child.stdout.on("data", (chunk: Buffer) => {
  output += chunk.toString("utf8");
});
child.stderr.on("data", (chunk: Buffer) => {
  output += chunk.toString("utf8");
});
const exited = new Promise<number | string>((resolve) =>
  child.on("exit", (code, signal) => resolve(code ?? signal ?? -1)),
);

try {
  const started = Date.now();
  let port: string | undefined;
  while (!port) {
    port = /"port":(\d+)[^\n]*"msg":"listening"/.exec(output)?.[1];
    check(child.exitCode === null, `the server exited at start:\n${output}`);
    check(Date.now() - started < 30_000, `no "listening" line within 30 s:\n${output}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const base = `http://127.0.0.1:${port}`;
  console.log(`node ${process.version}: dist/server.js listening on ${base} after ${Date.now() - started} ms`);

  const ready = await fetch(`${base}/readyz`);
  check(ready.status === 200, `GET /readyz answered ${ready.status}`);

  const sent = await fetch(`${base}/v1/messages`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-api-key": API_KEY },
    body: JSON.stringify({ to: "+38761444555", text: "Your code is 482910" }),
  });
  const message = (await sent.json()) as { uuid?: string; status?: string };
  check(sent.status === 201 && message.uuid && message.status === "PENDING", `send: ${sent.status}`);
  check(fake.requests.length === 1, "the fake Betatel did not receive the send");
  console.log(`sent ${message.uuid}: PENDING`);

  const hook = await fetch(`${base}/webhooks/betatel`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-webhook-secret": WEBHOOK_SECRET },
    body: JSON.stringify({ uuid: message.uuid, status: "DELIVERED" }),
  });
  const hookBody = (await hook.json()) as { results?: { outcome?: string }[] };
  check(hook.status === 200 && hookBody.results?.[0]?.outcome === "applied", `webhook: ${hook.status}`);

  const read = await fetch(`${base}/v1/messages/${message.uuid}`, { headers: { "x-api-key": API_KEY } });
  const stored = (await read.json()) as { status?: string; events?: unknown[] };
  check(read.status === 200 && stored.status === "DELIVERED", `read: ${read.status} ${stored.status}`);
  check(stored.events?.length === 2, `read: ${stored.events?.length} events, expected PENDING and DELIVERED`);
  console.log(`webhook applied; GET shows DELIVERED with 2 events; server RSS ${rssMiB(child.pid ?? 0)} MiB`);

  // The ops page's static files live outside TypeScript: the build must copy them into dist/.
  const login = await fetch(`${base}/ops/login`, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ token: OPS_TOKEN }),
    redirect: "manual",
  });
  const cookie = login.headers.get("set-cookie")?.split(";")[0] ?? "";
  check(login.status === 303 && cookie, `ops sign-in: ${login.status}`);
  const page = await fetch(`${base}/ops`, { headers: { cookie } });
  const html = await page.text();
  check(page.status === 200 && html.includes("<html"), `GET /ops answered ${page.status}: ${html.slice(0, 200)}`);
  for (const asset of ["/ops/assets/ops.js", "/ops/assets/ops.css", "/ops/vendor/uPlot.iife.min.js"]) {
    const file = await fetch(`${base}${asset}`);
    check(file.status === 200, `GET ${asset} answered ${file.status}`);
  }
  console.log("ops page: sign-in, page and assets served from dist/");

  child.kill("SIGTERM");
  const code = await Promise.race([exited, new Promise((resolve) => setTimeout(() => resolve("timeout"), 30_000))]);
  check(code === 0, `after SIGTERM the server ended with ${String(code)}:\n${output}`);
  console.log("SIGTERM: exit code 0. Smoke passed.");
} catch (error) {
  console.error((error as Error).message);
  process.exitCode = 1;
} finally {
  child.kill("SIGKILL");
  await fake.close();
  await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  await admin.end();
}
