import { setTimeout as sleep } from "node:timers/promises";
import { Router } from "express";
import { acceptsWrites, type Database, READINESS_TIMEOUT_MS } from "../db/database.ts";
import { sendProblem, storageUnavailable } from "../http/problem.ts";
import { findMessage } from "../messages/repository.ts";

/** A uuid no message has: the probe runs the real read and finds nothing. */
const PROBE_UUID = "readiness-probe";

type ProbeResult = "up" | "read-only";

/**
 * Whether the database can serve the service's own statements, on the readiness connection: the read behind
 * `GET /v1/messages/:uuid` (its named prepared statement, its tables), and whether writes are accepted (a
 * standby after a failover reads fine but refuses every webhook and send).
 */
async function probe(db: Database): Promise<ProbeResult> {
  await findMessage({ pool: db.readinessPool }, PROBE_UUID, PROBE_UUID);
  return (await acceptsWrites(db.readinessPool)) ? "up" : "read-only";
}

/** `GET /healthz` (the process answers) and `GET /readyz` (the database serves the service's queries; 503 if not). */
export function healthRouter(db: Database): Router {
  const router = Router();
  router.get("/healthz", (_req, res) => {
    res.json({ status: "ok" });
  });
  router.get("/readyz", async (req, res) => {
    const deadline = new AbortController();
    const result = await Promise.race([
      probe(db).catch((error: unknown) => {
        req.log?.warn({ err: error }, "readiness probe failed");
        return "down" as const;
      }),
      // No answer in time is as good as none: a load balancer must not wait on a stuck database.
      sleep(READINESS_TIMEOUT_MS, "down" as const, { signal: deadline.signal }).catch(() => "down" as const),
    ]);
    deadline.abort();
    if (result === "up") {
      res.json({ status: "ready", database: "up" });
      return;
    }
    sendProblem(res, storageUnavailable({ extra: { database: result }, title: "Not ready" }));
  });
  return router;
}
