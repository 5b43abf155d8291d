import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import request from "supertest";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type CallbackReceiver, startCallbackReceiver } from "./support/callback-receiver.ts";
import { aTeam, aWorker, sendAs } from "./support/callbacks.ts";
import { openIsolatedDatabase } from "./support/isolated-database.ts";
import { spawnServer } from "./support/spawn-server.ts";
import { startTestAppOn, type TestApp } from "./support/test-app.ts";
import { postWebhook } from "./support/webhook.ts";

const run = promisify(execFile);
const ROOT = path.resolve(import.meta.dirname, "..");

/** `npm run callbacks -- ...args` as an operator runs it (the same entry, without npm's banner). */
async function cli(args: string[], env: Record<string, string> = { DATABASE_URL: t.db.url ?? "" }) {
  try {
    const { stdout } = await run(process.execPath, ["--import", "tsx", "src/callbacks/cli.ts", ...args], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? "", ...env },
    });
    return { code: 0, out: stdout };
  } catch (error) {
    const failed = error as { code: number; stdout: string; stderr: string };
    return { code: failed.code, out: `${failed.stdout}${failed.stderr}` };
  }
}

const owner = aTeam();
let t: TestApp;
let receiver: CallbackReceiver;

beforeAll(async () => {
  // A database of its own: workers claim every team's due deliveries, and other files' servers run workers.
  t = await startTestAppOn(await openIsolatedDatabase(), { API_KEYS: owner.apiKeys });
  receiver = await startCallbackReceiver();
});
afterAll(async () => {
  await receiver.close();
  await t.close();
});

describe("npm run callbacks", () => {
  it("when an endpoint is added, then the printed secret verifies its callbacks, and replay sends them again", async () => {
    const added = await cli(["add", "--team", owner.team, "--url", receiver.url, "--events", "message.status"]);
    expect(added.code).toBe(0);
    const id = /endpoint (ep_\w+)/.exec(added.out)?.[1];
    receiver.secret = /^(whsec_\S+)$/m.exec(added.out)?.[1] ?? "";
    expect(id).toBeDefined();

    const uuid = await sendAs(t.app, owner.auth);
    await postWebhook(t.app, { uuid, status: "SENT" }).expect(200);
    await aWorker(t.db).runOnce();
    const [first] = await receiver.waitFor(1);
    expect(receiver.rejected).toBe(0);

    const listed = await cli(["list", "--team", owner.team]);
    expect(listed.out).toContain(`${id}  team=${owner.team}  ${receiver.url}  [message.status]  enabled`);

    const since = new Date(Date.now() - 60_000).toISOString();
    const replayed = await cli(["replay", "--team", owner.team, "--since", since]);
    expect(replayed.out).toContain("1 deliveries");
    await aWorker(t.db).runOnce();
    const [, again] = await receiver.waitFor(2);
    expect(again?.headers["webhook-id"]).toBe(first?.headers["webhook-id"]);

    expect((await cli(["disable", id ?? ""])).code).toBe(0);
    await postWebhook(t.app, { uuid, status: "DELIVERED" }).expect(200);
    const list = await request(t.app).get("/v1/callbacks/deliveries").set(owner.auth).expect(200);
    expect(list.body.items).toHaveLength(1);
  });

  it.each([
    [["add", "--team", "growth", "--url", "ftp://example.com/x"], "must be an http(s) URL"],
    [["add", "--team", "growth"], "--url is required"],
    [["add", "--team", "growth", "--url", "https://example.com", "--events", "sms.sent"], "unknown event type"],
    [["replay", "--team", "growth", "--since", "yesterday"], "--since must be an ISO 8601 date or date-time"],
    [["enable", "ep_nothing"], "no endpoint ep_nothing"],
    [["launch"], "unknown command launch"],
  ])("when called with %j, then it exits 1 saying %s", async (args, message) => {
    const result = await cli(args);
    expect(result.code).toBe(1);
    expect(result.out).toContain(message);
  });

  it.each([
    [["add", "--team", "bad team!", "--url", "https://example.com/x"]],
    [["list", "--team", "bad team!"]],
    [["replay", "--team", "bad team!", "--since", "2026-01-01"]],
  ])("when the team name in %j is not a team name, then it exits 1 with the rule and adds nothing", async (args) => {
    const result = await cli(args);
    expect(result.code).toBe(1);
    expect(result.out).toContain("--team must be 1 to 64 letters, digits, dots, dashes or underscores");
    expect(result.out).toContain("Usage: npm run callbacks");
    const rows = await t.db.pool.query("SELECT id FROM callback_endpoints WHERE team = 'bad team!'");
    expect(rows.rows).toEqual([]);
  });

  const NOT_ISO = "--since must be an ISO 8601 date or date-time";
  it.each([
    { given: "a bare number", since: "1", message: NOT_ISO }, // new Date("1") is 2001-01-01
    { given: "a time without offset", since: "2026-11-28T10:00:00", message: NOT_ISO }, // whose 10:00?
    { given: "a day that does not exist", since: "2026-02-30", message: NOT_ISO }, // new Date() makes it March 2
    {
      given: "a time tomorrow",
      since: new Date(Date.now() + 86_400_000).toISOString(),
      message: "--since must not be in the future",
    },
  ])(
    "when replay gets --since as $given, then it exits 1 saying what --since takes and queues nothing",
    async (row) => {
      const result = await cli(["replay", "--team", owner.team, "--since", row.since]);
      expect(result.code).toBe(1);
      expect(result.out).toContain(row.message);
      expect(result.out).not.toContain("queued again");
    },
  );

  it("when replay gets a date or a date-time with an offset, then it replays from that instant", async () => {
    const byDate = await cli(["replay", "--team", owner.team, "--since", "2026-01-02"]);
    expect(byDate.code).toBe(0);
    expect(byDate.out).toMatch(/deliveries of team \S+ since 2026-01-02T00:00:00.000Z queued again/);
    const byOffset = await cli(["replay", "--team", owner.team, "--since", "2026-01-02T10:00:00+02:00"]);
    expect(byOffset.code).toBe(0);
    expect(byOffset.out).toMatch(/since 2026-01-02T08:00:00.000Z queued again/);
  });

  it("when production refuses private targets, then a loopback endpoint is refused at once", async () => {
    const result = await cli(["add", "--team", "growth", "--url", "https://127.0.0.1/x"], {
      DATABASE_URL: t.db.url ?? "",
      CALLBACKS_ALLOW_PRIVATE: "false",
    });
    expect(result.code).toBe(1);
    expect(result.out).toContain("refused: the URL address 127.0.0.1 is not public");
  });

  it("when NODE_ENV=production has no Betatel credentials, then endpoints are still added and listed", async () => {
    // What the service alone needs (Betatel, API_KEYS, WEBHOOK_SECRET, ...) is not set: the CLI does not use it.
    const production = { NODE_ENV: "production", DATABASE_URL: t.db.url ?? "", CALLBACKS_ALLOW_PRIVATE: "true" };
    const team = aTeam().team;
    const added = await cli(["add", "--team", team, "--url", receiver.url], {
      ...production,
      CALLBACKS_SECRET: "a-callbacks-secret-of-at-least-32-chars",
    });
    expect(added.code).toBe(0);
    expect(added.out).toMatch(/^whsec_\S+$/m);
    const { rows } = await t.db.pool.query("SELECT url FROM callback_endpoints WHERE team = $1", [team]);
    expect(rows).toEqual([{ url: receiver.url }]);
    const listed = await cli(["list", "--team", team], production); // no CALLBACKS_SECRET: listing needs none
    expect(listed.code).toBe(0);
    expect(listed.out).toContain(`team=${team}  ${receiver.url}`);
  });

  it("when the service runs on the embedded database, then the CLI refuses to open it beside the service", async () => {
    const dataDir = await mkdtemp(path.join(tmpdir(), "otp-cli-"));
    // The embedded start (PGlite, migrations) is the slowest there is: give it time on a loaded CI machine.
    const server = await spawnServer({ DATA_DIR: dataDir, RECONCILE_INTERVAL_MS: "0" }, 45_000);
    try {
      const refused = await cli(["list"], { DATA_DIR: dataDir });
      expect(refused.code).toBe(1);
      expect(refused.out).toContain(`is in use by process ${server.child.pid}`);
    } finally {
      server.kill("SIGTERM");
      await server.exited;
    }
    const listed = await cli(["list"], { DATA_DIR: dataDir });
    expect(listed).toEqual({ code: 0, out: "no endpoints\n" });
    await rm(dataDir, { recursive: true, force: true });
  }, 60_000);
});
