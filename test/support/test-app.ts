import { Writable } from "node:stream";
import type { Express } from "express";
import { ulid } from "ulid";
import { createBetatelClient } from "../../src/betatel/client.ts";
import { loadConfig } from "../../src/config.ts";
import type { Database } from "../../src/db/database.ts";
import { createLogger } from "../../src/http/logging.ts";
import { createLocalNotifier } from "../../src/live/notifier.ts";
import { createService } from "../../src/service.ts";
import { type FakeBetatel, startFakeBetatel } from "./fake-betatel.ts";
import { openTestDatabase } from "./test-database.ts";

/** Every log line the app wrote, as text and parsed. */
export class LogCapture extends Writable {
  readonly lines: string[] = [];
  override _write(chunk: Buffer, _encoding: BufferEncoding, done: () => void) {
    this.lines.push(...chunk.toString("utf8").split("\n").filter(Boolean));
    done();
  }
  get text() {
    return this.lines.join("\n");
  }
}

export interface TestApp {
  app: Express;
  db: Database;
  betatel: FakeBetatel;
  logs: LogCapture;
  close(): Promise<void>;
}

export const TEST_BETATEL = { apiKey: "test-betatel-key", accountId: "test-account-id" };

/**
 * The real service (built by `createService`, not started) over a real database and a fake Betatel server. `env` overrides the service's
 * environment as an operator would set it.
 */
export async function startTestApp(env: Record<string, string> = {}): Promise<TestApp> {
  return startTestAppOn(await openTestDatabase(), env);
}

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
    // The run's test files share one database, as instances do: the shared abuse limits would count every
    // file's sends together. Off here; the limits' own tests (and any test that sets them) turn them on.
    RECIPIENT_LIMITS: "off",
    RATE_LIMIT_PER_MINUTE: "0",
    ...env,
  });
  const logs = new LogCapture();
  const logger = createLogger(config.LOG_LEVEL, logs);
  const client = createBetatelClient({
    baseUrl: config.BETATEL_BASE_URL,
    timeoutMs: config.BETATEL_TIMEOUT_MS,
    apiKey: config.betatel?.apiKey ?? "",
    accountId: config.betatel?.accountId ?? "",
    retryDelayMs: 10,
  });
  // The service as production composes it, not started: tests call its app directly and run no background job.
  // Live changes stay in this process (the run's test files share one database).
  const service = await createService(config, { db, betatel: client, logger, notifier: createLocalNotifier() });
  return {
    app: service.app,
    db,
    betatel,
    logs,
    async close() {
      await betatel.close();
      await service.stop();
    },
  };
}

/** A valid phone number, random enough for one test (the Bosnia and Herzegovina mobile range 061). */
export function aPhoneNumber(): string {
  return `38761${Math.floor(100_000 + Math.random() * 899_999)}`;
}

/** A uuid Betatel could have issued. */
export const aUuid = () => ulid();
