import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { promisify } from "node:util";
import { beforeAll, describe, expect, inject, it } from "vitest";
import { aFreePort } from "./support/free-port.ts";
import { embedded } from "./support/test-database.ts";

const run = promisify(execFile);
const ROOT = path.resolve(import.meta.dirname, "..");
const TSX = pathToFileURL(path.join(ROOT, "node_modules/tsx/dist/loader.mjs")).href;

/** The three command-line tools, each with a command that opens the database. */
const TOOLS = [
  { tool: "npm run migrate", args: ["src/db/migrate-cli.ts"] },
  { tool: "npm run keys", args: ["src/keys/cli.ts", "list"] },
  { tool: "npm run callbacks", args: ["src/callbacks/cli.ts", "list"] },
];

/** A tool run as an operator runs it, with only `env` set, from `cwd` (the checkout by default). */
async function runTool(args: string[], env: Record<string, string>, cwd = ROOT) {
  const [script = "", ...rest] = args;
  try {
    const { stdout, stderr } = await run(process.execPath, ["--import", TSX, path.join(ROOT, script), ...rest], {
      cwd,
      env: { PATH: process.env.PATH ?? "", ...env },
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code: number; stdout: string; stderr: string };
    return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr };
  }
}

describe.each(TOOLS)("$tool", ({ args }) => {
  let closedPort: number;
  beforeAll(async () => {
    closedPort = await aFreePort(); // nothing listens there
  });

  it("when the database cannot be reached, then it exits 1 with one line naming the host, not the password", async () => {
    const env = { DATABASE_URL: `postgresql://otp:s3cret-pw@127.0.0.1:${closedPort}/otp` };
    const result = await runTool(args, env);
    expect(result).toEqual({
      code: 1,
      stdout: "",
      stderr: `cannot reach the database at 127.0.0.1:${closedPort} (ECONNREFUSED)\n`,
    });
  });

  it("when DATABASE_URL is only in the working directory's .env, then it uses it, as the service does", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "otp-tool-env-"));
    try {
      await writeFile(path.join(dir, ".env"), `DATABASE_URL=postgresql://otp:pw@127.0.0.1:${closedPort}/otp\n`);
      const result = await runTool(args, {}, dir);
      expect(result.stderr).toBe(`cannot reach the database at 127.0.0.1:${closedPort} (ECONNREFUSED)\n`);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("when the configuration is wrong, then it exits 1 with the configuration's one line, even with LOG_LEVEL=debug", async () => {
    const result = await runTool(args, { NODE_ENV: "production", LOG_LEVEL: "debug" });
    expect(result).toEqual({
      code: 1,
      stdout: "",
      stderr: "Invalid configuration: DATABASE_URL: required when NODE_ENV=production\n",
    });
  });

  it.skipIf(embedded)(
    "when an unexpected error stops it, then one line says what, and LOG_LEVEL=debug adds the stack",
    async () => {
      const missing = new URL(inject("adminDatabaseUrl"));
      missing.pathname = "/otp_no_such_database";
      const plain = await runTool(args, { DATABASE_URL: missing.toString() });
      expect(plain).toEqual({ code: 1, stdout: "", stderr: 'database "otp_no_such_database" does not exist\n' });

      const debug = await runTool(args, { DATABASE_URL: missing.toString(), LOG_LEVEL: "debug" });
      expect(debug.code).toBe(1);
      expect(debug.stderr).toMatch(/^error: database "otp_no_such_database" does not exist\n\s+at /);
    },
  );
});
