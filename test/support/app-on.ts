import { createApp } from "../../src/app.ts";
import { createBetatelClient } from "../../src/betatel/client.ts";
import { loadConfig } from "../../src/config.ts";
import type { Database } from "../../src/db/database.ts";
import { createLogger } from "../../src/http/logging.ts";
import { startFakeBetatel } from "./fake-betatel.ts";
import { LogCapture, TEST_BETATEL, type TestApp } from "./test-app.ts";

/**
 * Like `startTestApp`, but over a database the test opened itself (a scratch database, or the run's
 * database behind a TCP proxy). `close()` closes that database too.
 */
export async function startTestAppOn(db: Database, env: Record<string, string> = {}): Promise<TestApp> {
  const betatel = await startFakeBetatel();
  const config = loadConfig({
    NODE_ENV: "test",
    LOG_LEVEL: "info",
    BETATEL_BASE_URL: betatel.url,
    BETATEL_API_KEY: TEST_BETATEL.apiKey,
    BETATEL_ACCOUNT_ID: TEST_BETATEL.accountId,
    BETATEL_TIMEOUT_MS: "2000",
    ...env,
  });
  const logs = new LogCapture();
  const client = createBetatelClient({
    baseUrl: config.BETATEL_BASE_URL,
    timeoutMs: config.BETATEL_TIMEOUT_MS,
    apiKey: config.betatel?.apiKey ?? "",
    accountId: config.betatel?.accountId ?? "",
    retryDelayMs: 10,
  });
  const app = createApp({ config, db, betatel: client, logger: createLogger(config.LOG_LEVEL, logs) });
  return {
    app,
    db,
    betatel,
    logs,
    async close() {
      await betatel.close();
      await db.close();
    },
  };
}
