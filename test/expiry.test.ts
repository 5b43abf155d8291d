import request from "supertest";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../src/http/logging.ts";
import { createExpiry } from "../src/reconcile/expiry.ts";
import { anAncientClock, backdate, DAY, HOUR, sendOtp } from "./support/reconcile-fixtures.ts";
import { LogCapture, startTestApp, type TestApp } from "./support/test-app.ts";

let t: TestApp;
beforeAll(async () => {
  t = await startTestApp();
});
afterAll(() => t.close());

const readMessage = async (uuid: string) => (await request(t.app).get(`/v1/messages/${uuid}`)).body;
const postStatus = (uuid: string, status: string) =>
  request(t.app).post("/webhooks/betatel").send({ uuid, status, timestamp: new Date().toISOString() });

describe("expiry", () => {
  it("when PENDING or SENT messages pass EXPIRE_AFTER_MS, then they become EXPIRED in batches; younger and resolved ones stay", async () => {
    // The oldest clock of these tests: no other test of this run has rows older than its threshold.
    const now = anAncientClock(1950, 1);
    const old = new Date(now.getTime() - 2 * DAY);
    const pending = [await sendOtp(t.app), await sendOtp(t.app), await sendOtp(t.app)];
    const sent = await sendOtp(t.app);
    const delivered = await sendOtp(t.app);
    const young = await sendOtp(t.app);
    expect((await postStatus(sent, "sent")).status).toBe(200);
    expect((await postStatus(delivered, "delivered")).status).toBe(200);
    for (const uuid of [...pending, sent, delivered]) await backdate(t.db, uuid, old);
    await backdate(t.db, young, new Date(now.getTime() - HOUR));
    const logs = new LogCapture();
    const expiry = createExpiry({
      pool: t.db.pool,
      logger: createLogger("info", logs),
      expireAfterMs: DAY,
      batchSize: 2,
      now: () => now,
    });

    const { expired } = await expiry.runOnce();

    expect(expired).toBeGreaterThanOrEqual(4); // its own rows, and nothing else is that old
    for (const uuid of [...pending, sent]) {
      const message = await readMessage(uuid);
      expect(message).toMatchObject({ status: "EXPIRED", expiredAt: now.toISOString() });
      expect(message.events).toContainEqual(
        expect.objectContaining({ status: "EXPIRED", outcome: "applied", source: "expiry" }),
      );
    }
    expect((await readMessage(delivered)).status).toBe("DELIVERED");
    expect((await readMessage(young)).status).toBe("PENDING");
    expect(logs.text).toContain('"msg":"expired messages"');

    // EXPIRED is final: a late delivery report is recorded but cannot revive it.
    const late = await postStatus(sent, "delivered");
    expect(late.body.results).toEqual([{ uuid: sent, status: "DELIVERED", outcome: "rejected" }]);
    expect((await expiry.runOnce()).expired).toBe(0);
  });
});
