import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import request from "supertest";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openDatabase } from "../src/db/database.ts";
import { applyMigrations } from "../src/db/migrate.ts";
import { aPhoneNumber, startTestAppOn, type TestApp } from "./support/test-app.ts";

// The embedded database (PGlite behind a loopback socket) is ONE Postgres session: prepared statements made
// through a pool client outlive that client. These tests make the pool drop its client for real (idle
// eviction with a short idle timeout, a client discarded after an error) and then use the service again.
const IDLE_TIMEOUT_MS = 200;

let t: TestApp;
let dataDir: string;
beforeAll(async () => {
  dataDir = await mkdtemp(path.join(tmpdir(), "otp-pglite-idle-"));
  const db = await openDatabase({ url: undefined, dataDir, poolSize: 1, idleTimeoutMs: IDLE_TIMEOUT_MS });
  await applyMigrations(db.pool);
  t = await startTestAppOn(db);
});
afterAll(async () => {
  await t.close();
  await rm(dataDir, { recursive: true, force: true });
});

const sendOtp = () => request(t.app).post("/v1/messages").send({ to: aPhoneNumber(), text: "Your code is 864213" });
const postStatus = (uuid: string, status: string) => request(t.app).post("/webhooks/betatel").send({ uuid, status });

async function readAndAdvance(uuid: string, status: string) {
  const read = await request(t.app).get(`/v1/messages/${uuid}`);
  expect(read.status).toBe(200);
  const hook = await postStatus(uuid, status);
  expect(hook.status).toBe(200);
  expect(hook.body.results).toEqual([{ uuid, status, outcome: "applied" }]);
  expect((await request(t.app).get(`/v1/messages/${uuid}`)).body.status).toBe(status);
  expect((await request(t.app).get("/readyz")).status).toBe(200);
}

describe("embedded database: when the pool's only connection is replaced", () => {
  it("when it sat idle longer than the idle timeout, then reads, webhooks and /readyz still work", async () => {
    const sent = await sendOtp();
    expect(sent.status).toBe(201);
    // Prepare the named statements on the current connection.
    await readAndAdvance(sent.body.uuid, "SENT");

    for (const status of ["DELIVERED", "READ"]) {
      await sleep(IDLE_TIMEOUT_MS * 3);
      // The mechanism really happened: the pool evicted its idle client.
      expect(t.db.pool.totalCount).toBe(0);
      await readAndAdvance(sent.body.uuid, status);
    }
    const another = await sendOtp();
    expect(another.status).toBe(201);
  });

  it("when a client is discarded after an error, then the next connection serves every statement", async () => {
    const sent = await sendOtp();
    await readAndAdvance(sent.body.uuid, "SENT");
    // What the pool does after a failed transaction: release with an error, so the client is destroyed.
    const client = await t.db.pool.connect();
    client.release(new Error("discard this connection"));
    expect(t.db.pool.totalCount).toBe(0);
    await readAndAdvance(sent.body.uuid, "DELIVERED");
  });

  it("when a client is discarded and work follows at once, then the successor connection is not turned away", async () => {
    // The discarded socket is still closing when the pool opens the next one.
    for (let round = 0; round < 20; round++) {
      const client = await t.db.pool.connect();
      client.release(true);
      const rows = await t.db.pool.query({ name: "embedded_probe", text: "SELECT $1::int AS round", values: [round] });
      expect(rows.rows).toEqual([{ round }]);
    }
    expect((await request(t.app).get("/readyz")).status).toBe(200);
  });
});
