import { Router } from "express";
import type { Database } from "../db/database.ts";
import { problemBody, storageUnavailable } from "../http/problem.ts";

/** `GET /healthz` (the process answers) and `GET /readyz` (the database answers too; 503 if not). */
export function healthRouter(db: Database): Router {
  const router = Router();
  router.get("/healthz", (_req, res) => {
    res.json({ status: "ok" });
  });
  router.get("/readyz", async (_req, res) => {
    try {
      await db.pool.query("SELECT 1");
      res.json({ status: "ready", database: "up" });
    } catch {
      res
        .status(503)
        .type("application/problem+json")
        .json({ ...problemBody(storageUnavailable()), title: "Not ready", database: "down" });
    }
  });
  return router;
}
