import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createCallbackWorker } from "../src/callbacks/worker.ts";
import type { Database } from "../src/db/database.ts";
import { createLogger } from "../src/http/logging.ts";
import { startVerificationExpiry } from "../src/verifications/expiry.ts";
import { TEST_CALLBACKS_SECRET } from "./support/callbacks.ts";
import { createScratchDatabase, openDatabaseAt, type ScratchDatabase } from "./support/scratch-database.ts";
import { startTcpProxy, type TcpProxy } from "./support/tcp-proxy.ts";
import { LogCapture } from "./support/test-app.ts";

// The background tasks run on a scratch database of their own behind a proxy this file owns: stopping the proxy is
// a database outage for them alone, and they cannot claim or expire other files' rows.
let scratch: ScratchDatabase;
let proxy: TcpProxy;
let db: Database;
beforeAll(async () => {
  scratch = await createScratchDatabase("background_logs");
  proxy = await startTcpProxy();
  db = await openDatabaseAt(proxy.via(scratch.url));
});
afterAll(async () => {
  await db.close();
  await proxy.close();
  await scratch.drop();
});

const RUN_EVERY_MS = 20;

function linesSaying(logs: LogCapture, message: string) {
  return logs.lines.map((line) => JSON.parse(line)).filter((line) => line.msg === message);
}

/** Runs the task every RUN_EVERY_MS through an outage of `outageMs` and back; returns what it logged. */
async function throughAnOutage(startTask: (logs: LogCapture) => () => Promise<void>, outageMs: number) {
  const logs = new LogCapture();
  await proxy.stop();
  const stopTask = startTask(logs);
  try {
    await sleep(outageMs);
    await proxy.start();
    await expect.poll(() => logs.text, { timeout: 5_000 }).toContain("works again");
  } finally {
    await stopTask();
  }
  return logs;
}

describe("when the database is down for a while, then each background task logs the outage once and its end once", () => {
  it("the status-callback worker, which tries to claim every poll", async () => {
    const logs = await throughAnOutage((capture) => {
      const worker = createCallbackWorker({
        pool: db.pool,
        logger: createLogger("info", capture),
        masterSecret: TEST_CALLBACKS_SECRET,
        allowPrivate: true,
        pollMs: RUN_EVERY_MS,
      });
      worker.start();
      return () => worker.stop();
    }, 1_000);

    const failed = linesSaying(logs, "claiming status callbacks failed");
    expect(failed).toHaveLength(1);
    expect(failed[0]).toMatchObject({ level: 50, failures: 1, err: expect.any(Object) });
    const recovered = linesSaying(logs, "claiming status callbacks works again");
    expect(recovered).toHaveLength(1);
    // Every poll of the outage failed and was counted, not logged: far more than the one line above.
    expect(recovered[0].failures).toBeGreaterThan(5);
  });

  it("the expiry of verifications", async () => {
    const logs = await throughAnOutage((capture) => {
      return startVerificationExpiry({
        pool: db.pool,
        logger: createLogger("info", capture),
        intervalMs: RUN_EVERY_MS,
      });
    }, 1_000);

    expect(linesSaying(logs, "expiring verifications failed")).toHaveLength(1);
    const recovered = linesSaying(logs, "expiring verifications works again");
    expect(recovered).toHaveLength(1);
    expect(recovered[0].failures).toBeGreaterThan(5);
  });
});
