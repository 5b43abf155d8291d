/// <reference lib="dom" />
// (DOM types for the callbacks that run in the browser page.)
/**
 * Regenerates docs/ops-page.png: the service as a newcomer runs it (sandbox, embedded database, no
 * configuration) with a day of history seeded in SQL (messages, callbacks, verifications), a few OTPs sent through the API while it runs, and
 * the page photographed in headless Chromium. `npm run screenshot:ops`.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { createApp } from "../src/app.ts";
import { createSandboxBetatel } from "../src/betatel/sandbox.ts";
import { loadConfig } from "../src/config.ts";
import { openDatabase } from "../src/db/database.ts";
import { applyMigrations } from "../src/db/migrate.ts";
import { createLogger } from "../src/http/logging.ts";
import { launchChromium } from "../test/support/chromium.ts";
import { seedOpsFeatures, seedOpsHistory } from "../test/support/ops-seed.ts";

const output = path.join(import.meta.dirname, "..", "docs", "ops-page.png");
const dataDir = await mkdtemp(path.join(tmpdir(), "ops-screenshot-"));
try {
  const config = loadConfig({ DATA_DIR: dataDir, LOG_LEVEL: "warn", SANDBOX_STEP_MS: "300" });
  const logger = createLogger(config.LOG_LEVEL);
  const db = await openDatabase({ url: undefined, dataDir, poolSize: 1 });
  await applyMigrations(db.pool);
  await seedOpsHistory(db.pool, { count: 2400, spanHours: 24 });
  await seedOpsFeatures(db.pool); // callback endpoints and deliveries, verifications
  // What the reconciler and the webhook leave behind on a normal day: a few checks, a status ahead of its message.
  await db.pool.query(
    `UPDATE messages SET check_count = 1 + length(uuid) % 3, last_checked_at = now() - interval '2 minutes',
       next_check_at = now() + interval '3 minutes'
     WHERE status = 'SENT' AND created_at < now() - interval '30 minutes'`,
  );
  await db.pool.query(
    `INSERT INTO message_events (uuid, status, outcome, occurred_at, source)
     VALUES ('01KB0Z8Q3J5W7Y9A1C3E5G7J9K', 'DELIVERED', 'buffered', now(), 'webhook')`,
  );

  let port = 0;
  const betatel = createSandboxBetatel({
    webhookUrl: () => `http://127.0.0.1:${port}/webhooks/betatel`,
    webhookSecret: undefined,
    signingSecret: undefined,
    stepMs: config.SANDBOX_STEP_MS,
    failureRate: config.SANDBOX_FAILURE_RATE,
    logger,
  });
  const server = createServer(createApp({ config, db, betatel, logger })).listen(0, "127.0.0.1");
  await new Promise((resolve) => server.once("listening", resolve));
  port = (server.address() as AddressInfo).port;
  const base = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 12; i++) {
    const res = await fetch(`${base}/v1/messages`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ to: `3876123456${i % 10}`, text: "Your code is 482910" }),
    });
    if (res.status !== 201) throw new Error(`POST /v1/messages answered ${res.status}`);
  }
  await sleep(1500); // the sandbox's statuses arrive 300 ms apart

  const browser = await launchChromium();
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  await page.goto(`${base}/ops`);
  await page.waitForFunction(() => document.body.dataset.readAt !== undefined);
  await page.screenshot({ path: output, fullPage: true });
  await browser.close();
  betatel.stop();
  server.close();
  await db.close();
  console.log(`wrote ${path.relative(process.cwd(), output)}`);
} finally {
  await rm(dataDir, { recursive: true, force: true });
}
