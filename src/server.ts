import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { createApp } from "./app.ts";
import { createBetatelClient } from "./betatel/client.ts";
import { createSandboxBetatel } from "./betatel/sandbox.ts";
import { type Config, ConfigError, loadConfig } from "./config.ts";
import { openDatabase } from "./db/database.ts";
import { applyMigrations } from "./db/migrate.ts";
import { createLogger } from "./http/logging.ts";
import { HTTP_SERVER_OPTIONS } from "./http/security.ts";
import { createMessageNotifier } from "./live/notifier.ts";
import { startRetention } from "./ops/retention.ts";
import { createExpiry } from "./reconcile/expiry.ts";
import { createReconcileJob } from "./reconcile/job.ts";
import { createReconciler } from "./reconcile/reconciler.ts";
import { settleStragglers } from "./webhooks/apply.ts";

function readConfig(): Config {
  try {
    return loadConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(error.message);
      process.exit(1);
    }
    throw error;
  }
}

const config = readConfig();
const logger = createLogger(config.LOG_LEVEL);

const db = await openDatabase({
  url: config.DATABASE_URL,
  dataDir: config.DATA_DIR,
  poolSize: config.DATABASE_POOL_SIZE,
});
const applied = await applyMigrations(db.pool);
logger.info(
  { database: db.kind, applied },
  db.kind === "embedded" ? `embedded database in ${config.DATA_DIR}` : "database ready",
);

let port = config.PORT;
const sandbox = config.betatel
  ? undefined
  : createSandboxBetatel({
      webhookUrl: () => `${config.PUBLIC_URL ?? `http://127.0.0.1:${port}`}/webhooks/betatel`,
      webhookSecret: config.WEBHOOK_SECRET,
      signingSecret: config.WEBHOOK_SIGNING_SECRET,
      stepMs: config.SANDBOX_STEP_MS,
      failureRate: config.SANDBOX_FAILURE_RATE,
      logger,
    });
const betatel =
  sandbox ??
  createBetatelClient({
    baseUrl: config.BETATEL_BASE_URL,
    timeoutMs: config.BETATEL_TIMEOUT_MS,
    apiKey: config.betatel?.apiKey ?? "",
    accountId: config.betatel?.accountId ?? "",
  });

if (sandbox) logger.warn("SANDBOX MODE: no Betatel credentials, NOTHING IS SENT TO WHATSAPP; statuses are simulated");
if (!config.WEBHOOK_SECRET) logger.warn("WEBHOOK_SECRET is unset: the webhook accepts unauthenticated requests");
if (config.API_KEYS.length === 0) logger.warn("API_KEYS is unset: /v1 is open to anyone who can reach it");
if (!config.OPS_TOKEN) {
  logger.warn(
    config.NODE_ENV === "production"
      ? "OPS_TOKEN is unset: the ops page at /ops is locked"
      : "OPS_TOKEN is unset: the ops page at /ops is open to anyone who can reach it",
  );
}

// Live status: LISTEN on its own connection (Postgres server), or in-process only (embedded database).
const notifier = await createMessageNotifier(db, { logger });
if (notifier.mode === "local") logger.info("live status: embedded database, changes are seen by this process only");
const reconcileJob = createReconcileJob({
  reconciler: createReconciler({
    pool: db.pool,
    betatel,
    logger,
    notifier,
    afterMs: config.RECONCILE_AFTER_MS,
    expireAfterMs: config.EXPIRE_AFTER_MS,
    batchSize: config.RECONCILE_BATCH_SIZE,
  }),
  expiry: createExpiry({
    pool: db.pool,
    logger,
    notifier,
    expireAfterMs: config.EXPIRE_AFTER_MS,
    batchSize: config.RECONCILE_BATCH_SIZE,
  }),
  settleStragglers: () => settleStragglers(db.pool),
  logger,
  intervalMs: config.RECONCILE_INTERVAL_MS,
});

const app = createApp({ config, db, betatel, logger, notifier });
let stopRetention = async () => {};
const server = createServer(HTTP_SERVER_OPTIONS, app);
server.on("error", (error) => {
  logger.fatal({ err: error }, `cannot listen on port ${config.PORT}`);
  process.exit(1);
});
server.listen(config.PORT, () => {
  port = (server.address() as AddressInfo).port;
  logger.info({ port }, "listening");
  if (stopping) return;
  reconcileJob.start();
  stopRetention = startRetention({
    pool: db.pool,
    logger,
    intervalMs: config.RETENTION_INTERVAL_MS,
    bufferedRetentionMs: config.BUFFERED_RETENTION_MS,
    messageRetentionMs: config.MESSAGE_RETENTION_MS,
  });
});

let stopping = false;
async function shutdown(signal: string) {
  if (stopping) return;
  stopping = true;
  logger.info({ signal }, "shutting down: finishing in-flight requests");
  // Whatever is still running, connections still open after 25 s are cut.
  const forced = setTimeout(() => server.closeAllConnections(), 25_000);
  sandbox?.stop();
  const jobsStopped = Promise.all([stopRetention(), reconcileJob.stop()]);
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  // A keep-alive connection becomes idle when its last response is sent: close it then, not at the forced close.
  const sweep = setInterval(() => server.closeIdleConnections(), 100);
  let exitCode = 0;
  try {
    // Live streams and long-polls never end by themselves: end them (long-polls answer the current state).
    await notifier.close();
    await closed;
    // At most 25 s more for a reconciler run in progress; claims it leaves unfinished expire with their lease.
    await Promise.race([jobsStopped, sleep(25_000)]);
    await db.close();
    logger.info("stopped");
  } catch (error) {
    logger.error({ err: error }, "shutdown failed");
    exitCode = 1;
  } finally {
    clearInterval(sweep);
    clearTimeout(forced);
  }
  process.exit(exitCode);
}

process.on("SIGTERM", () => void shutdown("SIGTERM"));
process.on("SIGINT", () => void shutdown("SIGINT"));
