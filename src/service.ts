import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import type { Express } from "express";
import type { Logger } from "pino";
import { createApp } from "./app.ts";
import { type Betatel, createBetatelClient } from "./betatel/client.ts";
import { createSandboxBetatel } from "./betatel/sandbox.ts";
import { createCallbackWorker } from "./callbacks/worker.ts";
import { type Config, configWarnings } from "./config.ts";
import { type Database, openDatabase } from "./db/database.ts";
import { migrateDatabase } from "./db/migrate.ts";
import { createLogger } from "./http/logging.ts";
import { answerClientErrorsAsProblems, HTTP_SERVER_OPTIONS } from "./http/security.ts";
import { createLiveHub } from "./live/hub.ts";
import { createMessageNotifier, type MessageNotifier } from "./live/notifier.ts";
import { openLiveReads } from "./live/reads.ts";
import { createInFlightSends } from "./messages/in-flight.ts";
import { createMetrics } from "./ops/metrics.ts";
import { startRetention } from "./ops/retention.ts";
import { createExpiry } from "./reconcile/expiry.ts";
import { createReconcileJob, createSweepJob } from "./reconcile/job.ts";
import { createOrphanAdoption } from "./reconcile/orphans.ts";
import { createReconciler } from "./reconcile/reconciler.ts";
import { settleStragglers } from "./tracking/apply.ts";
import { startVerificationExpiry } from "./verifications/expiry.ts";

/** Parts a test brings instead of the ones the service would build from its config. */
export interface ServiceOverrides {
  logger?: Logger;
  /** A database the caller opened and migrated; the service closes it on `stop()`. */
  db?: Database;
  betatel?: Betatel;
  notifier?: MessageNotifier;
}

export interface Service {
  app: Express;
  db: Database;
  logger: Logger;
  /** Listens on HOST:PORT, then starts the background jobs; resolves with the bound port. */
  start(): Promise<number>;
  /**
   * Finishes what is in flight within SHUTDOWN_GRACE_MS, stops the jobs and closes the database. Resolves with
   * the process's exit code: 1 when sends were abandoned or closing failed.
   */
  stop(reason?: string): Promise<number>;
}

/**
 * The composition root: builds the whole service from its config. Opens the database (and migrates it), but
 * listens nowhere and runs no background job until `start()`.
 */
export async function createService(config: Config, overrides: ServiceOverrides = {}): Promise<Service> {
  const logger = overrides.logger ?? createLogger(config.LOG_LEVEL);
  const db = overrides.db ?? (await openAndMigrate(config, logger));

  let port = config.PORT;
  /** How this process reaches itself: the bound address, or loopback when bound to every interface. */
  function ownUrl(): string {
    const host = !config.HOST || config.HOST === "0.0.0.0" || config.HOST === "::" ? "127.0.0.1" : config.HOST;
    return `http://${host.includes(":") ? `[${host}]` : host}:${port}`;
  }
  const sandbox =
    overrides.betatel || config.betatel
      ? undefined
      : createSandboxBetatel({
          webhookUrl: () => `${config.PUBLIC_URL ?? ownUrl()}/webhooks/betatel`,
          webhookSecret: config.WEBHOOK_SECRET,
          signingSecret: config.WEBHOOK_SIGNING_SECRET,
          stepMs: config.SANDBOX_STEP_MS,
          failureRate: config.SANDBOX_FAILURE_RATE,
          logger,
        });
  const betatel =
    overrides.betatel ??
    sandbox ??
    createBetatelClient({
      baseUrl: config.BETATEL_BASE_URL,
      timeoutMs: config.BETATEL_TIMEOUT_MS,
      apiKey: config.betatel?.apiKey ?? "",
      accountId: config.betatel?.accountId ?? "",
    });
  if (sandbox) logger.warn("SANDBOX MODE: no Betatel credentials, NOTHING IS SENT TO WHATSAPP; statuses are simulated");
  warnAboutConfig(config, logger);

  // Live status: LISTEN on its own connection (Postgres server), or in-process only (embedded database).
  const notifier = overrides.notifier ?? (await createMessageNotifier(db, { logger }));
  if (notifier.mode === "local") logger.info("live status: embedded database, changes are seen by this process only");
  const metrics = createMetrics({ pool: db.pool });
  // Streams and long-polls read through a small pool of their own (never the webhook's and send's connections).
  const liveReads = openLiveReads(db);
  const live = createLiveHub({
    notifier,
    read: liveReads.read,
    readConcurrency: liveReads.concurrency,
    readWaitMs: db.queryTimeoutMs,
    limits: { maxWatchers: config.LIVE_MAX_WATCHERS, maxWatchersPerKey: config.LIVE_MAX_WATCHERS_PER_KEY },
    onClose: liveReads.close,
  });
  const reconcileJob = createReconcileJob({
    reconciler: createReconciler({
      pool: db.pool,
      betatel,
      logger,
      notifier,
      afterMs: config.RECONCILE_AFTER_MS,
      expireAfterMs: config.EXPIRE_AFTER_MS,
      batchSize: config.RECONCILE_BATCH_SIZE,
      onCheck: (result) => metrics.reconcileChecks.inc({ result }),
    }),
    adoptOrphans: createOrphanAdoption({
      db,
      betatel,
      logger,
      notifier,
      afterMs: config.ORPHAN_ADOPT_AFTER_MS,
      batchSize: config.RECONCILE_BATCH_SIZE,
      onAdopted: () => metrics.orphansAdopted.inc(),
    }).runOnce,
    logger,
    intervalMs: config.RECONCILE_INTERVAL_MS,
  });
  const sweepJob = createSweepJob({
    expiry: createExpiry({
      pool: db.pool,
      logger,
      notifier,
      expireAfterMs: config.EXPIRE_AFTER_MS,
      batchSize: config.RECONCILE_BATCH_SIZE,
    }),
    settleStragglers: async () => {
      const settled = await settleStragglers(db.pool);
      notifier.published(settled);
      return settled.length;
    },
    logger,
    intervalMs: config.SWEEP_INTERVAL_MS,
  });
  const inFlightSends = createInFlightSends();

  // Status callbacks: every instance delivers; off in production until CALLBACKS_SECRET signs them.
  const callbacksSecret = config.CALLBACKS_SECRET;
  if (!callbacksSecret) logger.warn("CALLBACKS_SECRET is unset: status callbacks are off");
  const callbackWorker = callbacksSecret
    ? createCallbackWorker({
        pool: db.pool,
        logger,
        masterSecret: callbacksSecret,
        allowPrivate: config.CALLBACKS_ALLOW_PRIVATE,
        pollMs: config.CALLBACKS_POLL_MS,
        onAttempt: metrics.recordCallbackAttempt,
      })
    : undefined;

  const app = createApp({ config, db, betatel, logger, notifier, metrics, inFlightSends, live });
  const server = createServer(HTTP_SERVER_OPTIONS, app);
  answerClientErrorsAsProblems(server);
  let stopRetention = async () => {};
  let stopVerificationExpiry = async () => {};
  let stopping = false;

  function start(): Promise<number> {
    stopVerificationExpiry = startVerificationExpiry({
      pool: db.pool,
      logger,
      intervalMs: 10_000,
      onExpired: (count) => metrics.verifications.inc({ event: "expired" }, count),
    });
    return new Promise((resolve, reject) => {
      server.once("error", reject);
      // HOST unset: Node's default, every interface.
      server.listen({ port: config.PORT, host: config.HOST }, () => {
        server.off("error", reject);
        const address = server.address() as AddressInfo;
        port = address.port;
        logger.info({ host: address.address, port }, "listening");
        resolve(port);
        if (stopping) return;
        reconcileJob.start();
        sweepJob.start();
        callbackWorker?.start();
        stopRetention = startRetention({
          pool: db.pool,
          logger,
          intervalMs: config.RETENTION_INTERVAL_MS,
          bufferedRetentionMs: config.BUFFERED_RETENTION_MS,
          messageRetentionMs: config.MESSAGE_RETENTION_MS,
        });
      });
    });
  }

  let stopped: Promise<number> | undefined;
  // A second signal while stopping waits for the same shutdown.
  const stop = (reason = "stop") => {
    stopping = true;
    stopped ??= shutdown(reason);
    return stopped;
  };

  async function shutdown(reason: string): Promise<number> {
    const graceMs = config.SHUTDOWN_GRACE_MS;
    const deadline = Date.now() + graceMs;
    const left = () => Math.max(deadline - Date.now(), 0);
    logger.info({ signal: reason, graceMs }, "shutting down: finishing in-flight requests");
    // Whatever is still running, connections still open at the end of the grace are cut.
    const forced = setTimeout(() => server.closeAllConnections(), graceMs);
    sandbox?.stop();
    const jobsStopped = Promise.all([
      stopRetention(),
      reconcileJob.stop(),
      sweepJob.stop(),
      callbackWorker?.stop(),
      stopVerificationExpiry(),
    ]);
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    // A keep-alive connection becomes idle when its last response is sent: close it then, not at the forced close.
    const sweep = setInterval(() => server.closeIdleConnections(), 100);
    let exitCode = 0;
    try {
      // Live streams and long-polls never end by themselves: end them (long-polls answer the current state);
      // one that starts from now on is answered 503 at once.
      await live.close();
      // Sends in flight finish (the grace covers one, see SHUTDOWN_GRACE_MS): an OTP Betatel accepted must be
      // stored before the database closes. New sends are refused from here on.
      const abandoned = await inFlightSends.drain(Math.max(left() - 500, 0));
      if (abandoned.length > 0) {
        exitCode = 1;
        logger.error({ abandoned }, "shutdown abandoned sends still in flight: these OTPs may be out but untracked");
      }
      await Promise.race([closed, sleep(left())]);
      // A reconciler run in progress gets what is left of the grace; claims it leaves unfinished expire with their lease.
      await Promise.race([jobsStopped, sleep(left())]);
      // Closing waits for connections in use; their queries end within the query timeout, but the grace is what
      // was promised: past it, the process exits with the pool still closing.
      const dbClosed = await Promise.race([db.close().then(() => true), sleep(Math.max(left(), 1_000), false)]);
      if (!dbClosed) {
        exitCode = 1;
        logger.error("shutdown: the database connections did not close within the grace");
      }
      logger.info("stopped");
    } catch (error) {
      logger.error({ err: error }, "shutdown failed");
      exitCode = 1;
    } finally {
      clearInterval(sweep);
      clearTimeout(forced);
    }
    return exitCode;
  }

  return { app, db, logger, start, stop };
}

/** A database that cannot be opened or migrated (a changed migration, a failed one) stops the start. */
async function openAndMigrate(config: Config, logger: Logger): Promise<Database> {
  const db = await openDatabase({
    url: config.DATABASE_URL,
    dataDir: config.DATA_DIR,
    poolSize: config.DATABASE_POOL_SIZE,
    queryTimeoutMs: config.DATABASE_QUERY_TIMEOUT_MS,
  });
  try {
    const applied = await migrateDatabase(db);
    logger.info(
      { database: db.kind, applied },
      db.kind === "embedded" ? `embedded database in ${config.DATA_DIR}` : "database ready",
    );
    return db;
  } catch (error) {
    await db.close().catch(() => {});
    throw error;
  }
}

function warnAboutConfig(config: Config, logger: Logger): void {
  if (!config.WEBHOOK_SECRET) logger.warn("WEBHOOK_SECRET is unset: the webhook accepts unauthenticated requests");
  for (const warning of configWarnings(config)) logger.warn(warning);
  if (config.API_KEYS.length === 0) {
    logger.warn("API_KEYS is unset: /v1 is open to anyone who can reach it until a key is created with `npm run keys`");
  }
  if (!config.OPS_TOKEN) {
    logger.warn(
      config.NODE_ENV === "production"
        ? "OPS_TOKEN is unset: the ops page at /ops is locked"
        : "OPS_TOKEN is unset: the ops page at /ops is open to anyone who can reach it",
    );
  }
}
