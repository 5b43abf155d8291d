import request from "supertest";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp } from "../src/app.ts";
import { createBetatelClient } from "../src/betatel/client.ts";
import { loadConfig } from "../src/config.ts";
import { type Database, openDatabase } from "../src/db/database.ts";
import { createLogger } from "../src/http/logging.ts";
import { startTestApp, type TestApp } from "./support/test-app.ts";

let t: TestApp;
beforeAll(async () => {
  t = await startTestApp({ API_KEYS: "health-key" });
});
afterAll(() => t.close());

describe("GET /healthz and /readyz", () => {
  it("when the database answers, then both are 200, without an API key", async () => {
    const health = await request(t.app).get("/healthz");
    expect(health.status).toBe(200);
    expect(health.body).toEqual({ status: "ok" });
    const ready = await request(t.app).get("/readyz");
    expect(ready.status).toBe(200);
    expect(ready.body).toEqual({ status: "ready", database: "up" });
  });

  describe("when the database cannot be reached", () => {
    let down: Database;
    beforeAll(async () => {
      // A real pool pointed at a port where nothing listens: every connection is refused.
      down = await openDatabase({ url: "postgresql://postgres@127.0.0.1:9/none", dataDir: "", poolSize: 1 });
    });
    afterAll(() => down.close());

    it("then /readyz is 503 problem+json and /healthz still 200", async () => {
      const app = createApp({
        config: loadConfig({ NODE_ENV: "test" }),
        db: down,
        betatel: createBetatelClient({ baseUrl: "http://127.0.0.1:9", apiKey: "", accountId: "", timeoutMs: 100 }),
        logger: createLogger("silent"),
      });
      const ready = await request(app).get("/readyz");
      expect(ready.status).toBe(503);
      expect(ready.headers["content-type"]).toMatch(/^application\/problem\+json/);
      expect(ready.body).toMatchObject({ status: 503, code: "storage_unavailable", database: "down" });
      expect((await request(app).get("/healthz")).status).toBe(200);
      // The gauge cannot count without the database, but the scrape itself still answers.
      expect((await request(app).get("/metrics")).status).toBe(200);
    });
  });
});
