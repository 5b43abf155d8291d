import request from "supertest";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { createBetatelClient } from "../src/betatel/client.ts";
import { createLogger } from "../src/http/logging.ts";
import { findMessage } from "../src/messages/repository.ts";
import { ADOPTED_TEAM, createOrphanAdoption } from "../src/reconcile/orphans.ts";
import {
  aDeliveryRecord,
  anAncientClock,
  HOUR,
  MINUTE,
  serveWdr,
  wdrRequestsPerUuid,
} from "./support/reconcile-fixtures.ts";
import { aUuid, LogCapture, startTestApp, TEST_BETATEL, type TestApp } from "./support/test-app.ts";
import { postWebhook } from "./support/webhook.ts";

let t: TestApp;
beforeAll(async () => {
  t = await startTestApp();
});
afterAll(() => t.close());
beforeEach(() => t.betatel.reset());

/** Orphan adoption as the service builds it, at a fixed clock, asking about statuses older than 5 minutes. */
function adoptionAt(now: Date) {
  const logs = new LogCapture();
  let adopted = 0;
  const adoption = createOrphanAdoption({
    db: t.db,
    betatel: createBetatelClient({ baseUrl: t.betatel.url, ...TEST_BETATEL, timeoutMs: 2000 }),
    logger: createLogger("info", logs),
    afterMs: 5 * MINUTE,
    batchSize: 50,
    onAdopted: () => adopted++,
    now: () => now,
  });
  return { adoption, logs, adopted: () => adopted };
}

/** Statuses for a uuid this service never stored (its send was lost after Betatel accepted it), received `age` before `now`. */
async function orphanStatuses(uuid: string, now: Date, age: number, statuses: string[]) {
  const res = await postWebhook(
    t.app,
    statuses.map((status) => ({ uuid, status, timestamp: "2026-11-27T10:00:01.000Z" })),
  );
  expect(res.body.results.map((r: { outcome: string }) => r.outcome)).toEqual(statuses.map(() => "buffered"));
  await t.db.pool.query("UPDATE message_events SET received_at = $2 WHERE uuid = $1", [
    uuid,
    new Date(now.getTime() - age),
  ]);
}

// Each test at its own range of ancient clocks, the 404 one before the other: neither sees the other's rows.
describe("orphan adoption", () => {
  it("when statuses wait for a uuid Betatel knows, then the message is created from its record and the statuses settle", async () => {
    const now = anAncientClock(1960, 15);
    const known = aUuid();
    const young = aUuid();
    await orphanStatuses(known, now, 10 * MINUTE, ["SENT"]);
    await orphanStatuses(young, now, 1 * MINUTE, ["SENT"]);
    serveWdr(t.betatel, (id) =>
      id === known || id === young
        ? { status: 200, body: aDeliveryRecord(id, { status: "delivered", to: "38761444555" }) }
        : undefined,
    );
    const { adoption, logs, adopted } = adoptionAt(now);

    const summary = await adoption.runOnce();

    expect(summary).toMatchObject({ claimed: 1, adopted: 1 });
    expect(adopted()).toBe(1);
    expect(wdrRequestsPerUuid(t.betatel, [known, young])).toEqual([1, 0]);
    // Betatel's record does not say which team sent it: no key reads it; the tables (and dashboards) show it.
    expect((await request(t.app).get(`/v1/messages/${known}`)).status).toBe(404);
    const res = { body: await findMessage(t.db, known, ADOPTED_TEAM) };
    expect(res.body).toMatchObject({
      uuid: known,
      to: "38761444555",
      status: "DELIVERED",
      createdAt: "2026-11-27T10:00:00.000Z",
      sentAt: "2026-11-27T10:00:01.000Z",
      deliveredAt: "2026-11-27T10:00:03.000Z",
    });
    expect(res.body?.events).toContainEqual(expect.objectContaining({ status: "PENDING", source: "reconcile" }));
    expect(res.body?.events).toContainEqual(
      expect.objectContaining({ status: "SENT", outcome: "applied", source: "webhook" }),
    );
    const { rows } = await t.db.pool.query("SELECT text_length FROM messages WHERE uuid = $1", [known]);
    expect(rows).toEqual([{ text_length: null }]);
    // Logged with the number masked; the OTP in the record is never kept.
    expect(logs.text).toContain("adopted a message");
    expect(logs.text).toContain("387******55");
    expect(logs.text).not.toContain("38761444555");
    expect(logs.text).not.toContain("482910");
    // Young statuses wait: the send that stores them may still be running.
    expect((await request(t.app).get(`/v1/messages/${young}`)).status).toBe(404);
  });

  it("when Betatel does not know the uuid (404), then the statuses stay buffered and it is not asked again for a while", async () => {
    const now = anAncientClock(1930, 10);
    const unknown = aUuid();
    await orphanStatuses(unknown, now, 10 * MINUTE, ["SENT", "DELIVERED"]);
    serveWdr(t.betatel, () => undefined);

    const first = await adoptionAt(now).adoption.runOnce();
    const again = await adoptionAt(new Date(now.getTime() + MINUTE)).adoption.runOnce();
    const later = await adoptionAt(new Date(now.getTime() + HOUR)).adoption.runOnce();

    expect(first).toMatchObject({ claimed: 1, unknown: 1, adopted: 0 });
    expect(again.claimed).toBe(0);
    expect(later).toMatchObject({ claimed: 1, unknown: 1 });
    expect(wdrRequestsPerUuid(t.betatel, [unknown])).toEqual([2]);
    expect((await request(t.app).get(`/v1/messages/${unknown}`)).status).toBe(404);
    const { rows } = await t.db.pool.query("SELECT outcome FROM message_events WHERE uuid = $1", [unknown]);
    expect(rows).toEqual([{ outcome: "buffered" }, { outcome: "buffered" }]);
  });
});
