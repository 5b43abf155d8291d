import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { aPhoneNumber } from "./support/test-app.ts";
import { testDatabaseUrl } from "./support/test-database.ts";

interface LogLine {
  level: number;
  msg: string;
  port?: number;
}

/** The real service process (`src/server.ts` under tsx) with no Betatel credentials: sandbox mode. */
let server: ChildProcessWithoutNullStreams;
let baseUrl: string;
const logs: LogLine[] = [];
let dataDir: string | undefined;

beforeAll(async () => {
  const databaseUrl = testDatabaseUrl();
  // On the embedded run there is no shared server: the process keeps its own PGlite in a temporary folder.
  if (!databaseUrl) dataDir = await mkdtemp(path.join(tmpdir(), "otp-sandbox-"));
  // `node --import tsx` rather than `npx tsx`: one process, so SIGTERM reaches the server itself (npx does not forward it).
  server = spawn(process.execPath, ["--import", "tsx", "src/server.ts"], {
    env: {
      PATH: process.env.PATH ?? "",
      HOME: process.env.HOME ?? "",
      NODE_ENV: "development",
      PORT: "0",
      LOG_LEVEL: "info",
      SANDBOX_STEP_MS: "200",
      SANDBOX_FAILURE_RATE: "0",
      // The run's database is shared: the reconciler would claim, and the sweep expire, other files' old rows.
      RECONCILE_INTERVAL_MS: "0",
      SWEEP_INTERVAL_MS: "0",
      ...(databaseUrl ? { DATABASE_URL: databaseUrl } : { DATA_DIR: dataDir }),
    },
  });
  const port = await new Promise<number>((resolve, reject) => {
    let buffered = "";
    server.stdout.on("data", (chunk: Buffer) => {
      buffered += chunk.toString("utf8");
      const lines = buffered.split("\n");
      buffered = lines.pop() ?? "";
      for (const line of lines.filter(Boolean)) {
        const log = JSON.parse(line) as LogLine;
        logs.push(log);
        if (log.msg === "listening" && log.port) resolve(log.port);
      }
    });
    server.on("exit", (code) => reject(new Error(`server exited with ${code}`)));
  });
  baseUrl = `http://127.0.0.1:${port}`;
}, 60_000);

afterAll(async () => {
  if (server.exitCode === null && server.signalCode === null) {
    const exited = new Promise((resolve) => server.once("exit", resolve));
    server.kill("SIGTERM");
    const forced = setTimeout(() => server.kill("SIGKILL"), 10_000);
    await exited;
    clearTimeout(forced);
  }
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

describe("sandbox mode (no Betatel credentials)", () => {
  it("when the service starts, then its log says loudly that nothing is sent to WhatsApp", () => {
    const warning = logs.find((log) => /SANDBOX/.test(log.msg));

    expect(warning?.level).toBeGreaterThanOrEqual(40);
    expect(warning?.msg).toContain("NOTHING IS SENT TO WHATSAPP");
  });

  it("when an OTP is sent, then it gets a ULID and moves to READ through the service's own webhook", async () => {
    const to = aPhoneNumber();
    const sent = await fetch(`${baseUrl}/v1/messages`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ to, text: "Your code is 424242" }),
    });
    const created = (await sent.json()) as { uuid: string };
    expect(sent.status).toBe(201);
    expect(created).toMatchObject({ uuid: expect.stringMatching(/^[0-9A-HJKMNP-TV-Z]{26}$/), to, status: "PENDING" });

    const message = await pollUntil(`${baseUrl}/v1/messages/${created.uuid}`, (body) => body.status === "READ");

    expect(message).toMatchObject({
      status: "READ",
      sentAt: expect.any(String),
      deliveredAt: expect.any(String),
      readAt: expect.any(String),
      failedAt: null,
    });
    expect(message.events.map((event) => [event.status, event.outcome, event.source])).toEqual([
      ["PENDING", "applied", "api"],
      ["SENT", "applied", "webhook"],
      ["DELIVERED", "applied", "webhook"],
      ["READ", "applied", "webhook"],
    ]);
  });

  it("when nothing is configured, then the ops page is open (with a warning at start) and counts the sandbox's OTPs", async () => {
    expect(logs.find((log) => /OPS_TOKEN is unset/.test(log.msg))).toMatchObject({
      level: 40,
      msg: "OPS_TOKEN is unset: the ops page at /ops is open to anyone who can reach it",
    });
    expect((await fetch(`${baseUrl}/ops`)).status).toBe(200);
    const overview = await fetch(`${baseUrl}/ops/api/overview?window=1h`);
    expect(overview.status).toBe(200);
    const body = (await overview.json()) as { totals: { READ: number } };
    expect(body.totals.READ).toBeGreaterThanOrEqual(1); // the OTP of the test above
  });
});

interface MessageBody {
  status: string;
  events: { status: string; outcome: string; source: string }[];
}

async function pollUntil(url: string, done: (body: MessageBody) => boolean, timeoutMs = 10_000): Promise<MessageBody> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const res = await fetch(url);
    const body = (await res.json()) as MessageBody;
    if (done(body) || Date.now() > deadline) return body;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
