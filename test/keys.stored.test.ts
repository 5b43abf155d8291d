import { execFile } from "node:child_process";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import request from "supertest";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isWellFormedApiKey } from "../src/keys/key-format.ts";
import { createScratchDatabase, openDatabaseAt, type ScratchDatabase } from "./support/scratch-database.ts";
import { aPhoneNumber, startTestAppOn, type TestApp } from "./support/test-app.ts";

const ROOT = path.resolve(import.meta.dirname, "..");
const execFileAsync = promisify(execFile);

// Two instances of the service on one database, as in production: each has its own pool and key cache.
let scratch: ScratchDatabase;
let one: TestApp;
let two: TestApp;
beforeAll(async () => {
  scratch = await createScratchDatabase("keys");
  one = await startTestAppOn(await openDatabaseAt(scratch.url), { API_KEYS: "ops:static-key-1" });
  two = await startTestAppOn(await openDatabaseAt(scratch.url), { API_KEYS: "ops:static-key-1" });
}, 30_000);
afterAll(async () => {
  await one?.close();
  await two?.close();
  await scratch?.drop();
});

/** `npm run keys -- ...` as an operator runs it (the same command, without npm's banner), in `env`. */
async function keysIn(env: Record<string, string>, args: string[]) {
  try {
    const { stdout, stderr } = await execFileAsync(process.execPath, ["--import", "tsx", "src/keys/cli.ts", ...args], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? "", ...env },
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code: number; stdout: string; stderr: string };
    return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr };
  }
}

const keys = (...args: string[]) => keysIn({ DATABASE_URL: scratch.url }, args);

const read = (app: TestApp, key: string) => request(app.app).get("/v1/messages").set("x-api-key", key);

describe("npm run keys", () => {
  let key = "";
  let id = "";

  it("when a key is created, then it is printed once, has the otpk_ format, and only its hash is stored", async () => {
    const created = await keys("create", "--team", "growth", "--name", "signup form");

    expect(created.code).toBe(0);
    key = /\b(otpk_\w+)\b/.exec(created.stdout)?.[1] ?? "";
    id = /created key (\d+)/.exec(created.stdout)?.[1] ?? "";
    expect(isWellFormedApiKey(key)).toBe(true);
    expect(key).toMatch(/^otpk_[0-9A-Za-z]{38}$/);
    const rows = await scratch.query<Record<string, unknown>>("SELECT * FROM api_keys");
    expect(rows).toHaveLength(1);
    expect(JSON.stringify(rows)).not.toContain(key);
    expect(rows[0]).toMatchObject({ team: "growth", name: "signup form", prefix: key.slice(0, 11), revoked_at: null });
  });

  it("when the key is used on either instance, then it reads as team growth and last-used is recorded", async () => {
    const sent = await request(one.app)
      .post("/v1/messages")
      .set("authorization", `Bearer ${key}`)
      .send({ to: aPhoneNumber(), text: "Your code is 111111" });
    expect(sent.status).toBe(201);

    expect((await read(two, key)).body.items.map((item: { uuid: string }) => item.uuid)).toEqual([sent.body.uuid]);
    // The static key of team ops does not see growth's message.
    expect((await read(one, "static-key-1")).body.items).toEqual([]);
    const [row] = await scratch.query<{ team: string }>("SELECT team FROM messages WHERE uuid = $1", [sent.body.uuid]);
    expect(row?.team).toBe("growth");

    const listed = await keys("list");
    expect(listed.code).toBe(0);
    const line = listed.stdout.split("\n").find((text) => text.startsWith(`${id} `)) ?? "";
    expect(line).toMatch(
      new RegExp(`^${id}\\s+growth\\s+signup form\\s+${key.slice(0, 11)}…\\s+\\S+Z\\s+\\S+Z\\s+active$`),
    );
    expect(listed.stdout).not.toContain(key);
  });

  it("when a made-up key has the right shape but a wrong checksum, then 401", async () => {
    const forged = `${key.slice(0, -1)}${key.endsWith("a") ? "b" : "a"}`;
    expect((await read(one, forged)).status).toBe(401);
  });

  it("when the key is revoked, then both instances refuse it within 10 seconds, without a restart", async () => {
    // Both instances have just used (and cached) the key.
    expect((await read(one, key)).status).toBe(200);
    expect((await read(two, key)).status).toBe(200);

    const revoked = await keys("revoke", id);
    expect(revoked.code).toBe(0);
    const at = Date.now();
    const refusedAfter = async (app: TestApp) => {
      for (;;) {
        const res = await read(app, key);
        if (res.status === 401) return Date.now() - at;
        expect(res.status).toBe(200);
        if (Date.now() - at > 12_000) return Number.POSITIVE_INFINITY;
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    };
    const [first, second] = await Promise.all([refusedAfter(one), refusedAfter(two)]);
    expect(first).toBeLessThan(10_000);
    expect(second).toBeLessThan(10_000);
    expect((await keys("list")).stdout).toMatch(new RegExp(`^${id}\\s.*revoked \\S+Z$`, "m"));
  }, 20_000);

  it("when the command is wrong, then it exits 2 with the usage and changes nothing", async () => {
    const wrong = await keys("create", "--team", "bad team", "--name", "x");
    expect(wrong.code).toBe(2);
    expect(wrong.stderr).toContain("--team");
    expect((await keys("revoke", "999")).stderr).toContain("no active key with id 999");
    expect((await keys("rotate")).stderr).toContain("usage: npm run keys");
    expect(await scratch.query("SELECT id FROM api_keys")).toHaveLength(1);
  });
});

describe("npm run keys in production", () => {
  it("when NODE_ENV=production has no Betatel credentials, then a key is still created", async () => {
    const production = { NODE_ENV: "production", DATABASE_URL: scratch.url };
    const created = await keysIn(production, ["create", "--team", "prod", "--name", "deploy"]);
    expect(created.code).toBe(0);
    expect(created.stdout).toMatch(/created key \d+ for team prod \(deploy\)/);
    expect(await scratch.query("SELECT name FROM api_keys WHERE team = 'prod'")).toEqual([{ name: "deploy" }]);
  });

  it("when NODE_ENV=production has no DATABASE_URL, then it refuses rather than store the key in an embedded database", async () => {
    const dataDir = await mkdtemp(path.join(tmpdir(), "otp-keys-"));
    try {
      const production = { NODE_ENV: "production", DATA_DIR: dataDir };
      const refused = await keysIn(production, ["create", "--team", "t", "--name", "n"]);
      expect(refused.code).toBe(1);
      expect(refused.stderr).toContain("Invalid configuration: DATABASE_URL: required when NODE_ENV=production");
      expect(await readdir(dataDir)).toEqual([]); // no database was made where no instance reads it
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});

describe("a service with stored keys only", () => {
  it("when API_KEYS is unset but the table has an active key, then /v1 is not open", async () => {
    const created = await createScratchDatabase("keysonly");
    const app = await startTestAppOn(await openDatabaseAt(created.url));
    try {
      expect((await request(app.app).get("/v1/messages")).status).toBe(200); // nothing configured: open
      const { stdout } = await execFileAsync(
        process.execPath,
        ["--import", "tsx", "src/keys/cli.ts", "create", "--team", "t1", "--name", "n"],
        { cwd: ROOT, env: { PATH: process.env.PATH ?? "", DATABASE_URL: created.url } },
      );
      const key = /\b(otpk_\w+)\b/.exec(stdout)?.[1] ?? "";
      await new Promise((resolve) => setTimeout(resolve, 5_500)); // the "is anything configured" cache
      expect((await request(app.app).get("/v1/messages")).status).toBe(401);
      expect((await request(app.app).get("/v1/messages").set("x-api-key", key)).status).toBe(200);
    } finally {
      await app.close();
      await created.drop();
    }
  }, 30_000);
});
