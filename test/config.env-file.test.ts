import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { runServer, spawnServer } from "./support/spawn-server.ts";
import { embedded, testDatabaseUrl } from "./support/test-database.ts";

// The service reads `.env` from its working directory: each test starts it in a directory of its own.
describe.skipIf(embedded)("a .env file in the working directory", () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "otp-env-"));
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it("when .env sets API_KEYS and a bad PORT that the environment overrides, then the key guards /v1 and the start succeeds", async () => {
    await writeFile(path.join(dir, ".env"), "API_KEYS=key-from-dotenv\nPORT=not-a-number\n");
    const server = await spawnServer(
      { PORT: "0", DATABASE_URL: testDatabaseUrl() ?? "", RECONCILE_INTERVAL_MS: "0", RETENTION_INTERVAL_MS: "0" },
      20_000,
      { cwd: dir },
    );
    try {
      const without = await fetch(`${server.url}/v1/messages`);
      const withKey = await fetch(`${server.url}/v1/messages`, { headers: { "x-api-key": "key-from-dotenv" } });
      expect(without.status).toBe(401);
      expect(withKey.status).toBe(200);
    } finally {
      server.kill("SIGTERM");
      await server.exited;
    }
  });

  it("when .env says NODE_ENV=production and nothing else, then the start is refused naming what production needs", async () => {
    await writeFile(path.join(dir, ".env"), "# production, but no database or secrets\nNODE_ENV=production\n");
    const run = runServer({}, { cwd: dir });

    expect(await run.exited).toBe(1);
    expect(run.output().trim()).toBe(
      "Invalid configuration: BETATEL_API_KEY, BETATEL_ACCOUNT_ID, API_KEYS, WEBHOOK_SECRET, VERIFY_SECRET, WATCH_SECRET, DATABASE_URL: required when NODE_ENV=production",
    );
  });
});
