import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { STATUSES, type Status } from "../src/tracking/status.ts";
import { startTestApp, type TestApp } from "./support/test-app.ts";
import { aSentMessage, postWebhook, readMessage } from "./support/webhook.ts";

let t: TestApp;
beforeAll(async () => {
  t = await startTestApp();
});
afterAll(() => t.close());

const minutesAgo = (minutes: number) => new Date(Math.floor(Date.now() / 60_000) * 60_000 - minutes * 60_000);

// The transition table as seen over HTTP: PENDING is always a duplicate of the message's own PENDING event.
const HTTP_TABLE: Record<Status, Record<Status, string>> = {
  PENDING: {
    PENDING: "duplicate",
    SENT: "applied",
    DELIVERED: "applied",
    READ: "applied",
    FAILED: "applied",
    EXPIRED: "applied",
  },
  SENT: {
    PENDING: "duplicate",
    SENT: "duplicate",
    DELIVERED: "applied",
    READ: "applied",
    FAILED: "applied",
    EXPIRED: "applied",
  },
  DELIVERED: {
    PENDING: "duplicate",
    SENT: "stale",
    DELIVERED: "duplicate",
    READ: "applied",
    FAILED: "rejected",
    EXPIRED: "rejected",
  },
  READ: {
    PENDING: "duplicate",
    SENT: "stale",
    DELIVERED: "stale",
    READ: "duplicate",
    FAILED: "rejected",
    EXPIRED: "rejected",
  },
  FAILED: {
    PENDING: "duplicate",
    SENT: "stale",
    DELIVERED: "rejected",
    READ: "rejected",
    FAILED: "duplicate",
    EXPIRED: "rejected",
  },
  EXPIRED: {
    PENDING: "duplicate",
    SENT: "stale",
    DELIVERED: "rejected",
    READ: "rejected",
    FAILED: "rejected",
    EXPIRED: "duplicate",
  },
};

describe("POST /webhooks/betatel", () => {
  describe("body shapes", () => {
    it("when one status object arrives, then it answers one result and the message moves", async () => {
      const uuid = await aSentMessage(t.app);
      const res = await postWebhook(t.app, { uuid, status: "SENT" });
      expect(res.status).toBe(200);
      expect(res.body).toEqual({ results: [{ uuid, status: "SENT", outcome: "applied" }] });
      expect(await readMessage(t.app, uuid)).toMatchObject({ status: "SENT", sentAt: expect.any(String) });
    });

    it("when an array arrives, then it answers one result per item, in order", async () => {
      const [a, b] = [await aSentMessage(t.app), await aSentMessage(t.app)];
      const res = await postWebhook(t.app, [
        { uuid: b, status: "DELIVERED" },
        { uuid: a, status: "SENT" },
        { uuid: b, status: "SENT" },
      ]);
      expect(res.status).toBe(200);
      expect(res.body.results).toEqual([
        { uuid: b, status: "DELIVERED", outcome: "applied" },
        { uuid: a, status: "SENT", outcome: "applied" },
        { uuid: b, status: "SENT", outcome: "stale" },
      ]);
      expect((await readMessage(t.app, a)).status).toBe("SENT");
      expect(await readMessage(t.app, b)).toMatchObject({ status: "DELIVERED", sentAt: expect.any(String) });
    });

    it("when {statuses: [...]} arrives, then each item is processed in order", async () => {
      const uuid = await aSentMessage(t.app);
      const res = await postWebhook(t.app, {
        statuses: [
          { uuid, status: "SENT" },
          { uuid, status: "DELIVERED" },
          { uuid, status: "DELIVERED" },
        ],
      });
      expect(res.status).toBe(200);
      expect(res.body.results.map((r: { outcome: string }) => r.outcome)).toEqual(["applied", "applied", "duplicate"]);
      expect((await readMessage(t.app, uuid)).status).toBe("DELIVERED");
    });

    it("when the batch is empty, then it answers no results", async () => {
      expect((await postWebhook(t.app, [])).body).toEqual({ results: [] });
      expect((await postWebhook(t.app, { statuses: [] })).body).toEqual({ results: [] });
    });
  });

  describe("the state machine over HTTP", () => {
    const cells = STATUSES.flatMap((current) => STATUSES.map((incoming) => [current, incoming] as const));
    it.each(cells)(
      "when the message is %s and %s arrives, then the outcome follows the table",
      async (current, incoming) => {
        const uuid = await aSentMessage(t.app);
        if (current !== "PENDING") {
          expect((await postWebhook(t.app, { uuid, status: current })).body.results[0].outcome).toBe("applied");
        }
        const res = await postWebhook(t.app, { uuid, status: incoming });
        const outcome = HTTP_TABLE[current][incoming];
        expect(res.body.results).toEqual([{ uuid, status: incoming, outcome }]);
        expect((await readMessage(t.app, uuid)).status).toBe(outcome === "applied" ? incoming : current);
      },
    );

    it("when READ arrives before DELIVERED, then READ holds and DELIVERED only back-fills its timestamp", async () => {
      const uuid = await aSentMessage(t.app);
      const [readAt, deliveredAt] = [minutesAgo(1), minutesAgo(2)];
      expect(
        (await postWebhook(t.app, { uuid, status: "READ", timestamp: readAt.toISOString() })).body.results[0].outcome,
      ).toBe("applied");
      const late = await postWebhook(t.app, { uuid, status: "DELIVERED", timestamp: deliveredAt.toISOString() });
      expect(late.body.results[0].outcome).toBe("stale");
      const message = await readMessage(t.app, uuid);
      expect(message).toMatchObject({
        status: "READ",
        readAt: readAt.toISOString(),
        deliveredAt: deliveredAt.toISOString(),
        sentAt: null,
      });
      // Events are listed by occurredAt: the webhook's own timestamps, here older than the message row.
      expect(message.events.map((e: { status: string; outcome: string }) => `${e.status}:${e.outcome}`)).toEqual([
        "DELIVERED:stale",
        "READ:applied",
        "PENDING:applied",
      ]);
    });

    it("when a stale status's timestamp is already filled, then it is not overwritten", async () => {
      const uuid = await aSentMessage(t.app);
      const sentAt = minutesAgo(5);
      await postWebhook(t.app, { uuid, status: "SENT", timestamp: sentAt.toISOString() });
      await postWebhook(t.app, { uuid, status: "SENT", timestamp: minutesAgo(1).toISOString() });
      expect((await readMessage(t.app, uuid)).sentAt).toBe(sentAt.toISOString());
    });

    it("when FAILED then DELIVERED arrive, then DELIVERED is rejected and recorded, and the message stays FAILED", async () => {
      const uuid = await aSentMessage(t.app);
      await postWebhook(t.app, { uuid, status: "FAILED", error: "undeliverable" });
      const res = await postWebhook(t.app, { uuid, status: "DELIVERED" });
      expect(res.body.results[0].outcome).toBe("rejected");
      const message = await readMessage(t.app, uuid);
      expect(message).toMatchObject({ status: "FAILED", deliveredAt: null, failedAt: expect.any(String) });
      expect(message.events).toContainEqual(expect.objectContaining({ status: "DELIVERED", outcome: "rejected" }));
    });

    it("when an event has no timestamp, then the time it was received is used", async () => {
      const uuid = await aSentMessage(t.app);
      const before = Date.now();
      await postWebhook(t.app, { uuid, status: "SENT" });
      const sentAt = Date.parse((await readMessage(t.app, uuid)).sentAt);
      expect(sentAt).toBeGreaterThanOrEqual(before - 1000);
      expect(sentAt).toBeLessThanOrEqual(Date.now() + 1000);
    });
  });

  describe("item fields", () => {
    it.each(["sent", "Sent", "sEnT"])("when status is written %s, then it is read as SENT", async (status) => {
      const uuid = await aSentMessage(t.app);
      const res = await postWebhook(t.app, { uuid, status });
      expect(res.body.results).toEqual([{ uuid, status: "SENT", outcome: "applied" }]);
      expect((await readMessage(t.app, uuid)).status).toBe("SENT");
    });

    const at = new Date("2026-11-20T10:11:12.000Z");
    it.each([
      ["ISO 8601 with Z", at.toISOString()],
      ["ISO 8601 with an offset", "2026-11-20T12:11:12+02:00"],
      ["Unix seconds", at.getTime() / 1000],
      ["Unix seconds as a string", String(at.getTime() / 1000)],
      ["Unix milliseconds", at.getTime()],
    ])("when the timestamp is %s, then it is stored as that instant", async (_format, timestamp) => {
      const uuid = await aSentMessage(t.app);
      await postWebhook(t.app, { uuid, status: "DELIVERED", timestamp });
      const message = await readMessage(t.app, uuid);
      expect(message.deliveredAt).toBe(at.toISOString());
      expect(message.events).toContainEqual(
        expect.objectContaining({ status: "DELIVERED", occurredAt: at.toISOString() }),
      );
    });

    it.each([
      ["a string", "Message undeliverable", { code: null, message: "Message undeliverable" }],
      [
        "{code, message}",
        { code: 131026, message: "Message undeliverable" },
        { code: "131026", message: "Message undeliverable" },
      ],
      [
        "{code, title}",
        { code: "470", title: "Re-engagement message" },
        { code: "470", message: "Re-engagement message" },
      ],
    ])("when FAILED carries its reason as %s, then GET shows it as error", async (_form, error, expected) => {
      const uuid = await aSentMessage(t.app);
      await postWebhook(t.app, { uuid, status: "FAILED", error });
      expect(await readMessage(t.app, uuid)).toMatchObject({ status: "FAILED", error: expected });
    });

    it("when FAILED is rejected, then its reason does not become the message's error", async () => {
      const uuid = await aSentMessage(t.app);
      await postWebhook(t.app, { uuid, status: "DELIVERED" });
      await postWebhook(t.app, { uuid, status: "FAILED", error: "too late" });
      expect(await readMessage(t.app, uuid)).toMatchObject({ status: "DELIVERED", error: null });
    });

    it("when an item arrives, then its raw form (unknown fields too) is kept in message_events.payload", async () => {
      const uuid = await aSentMessage(t.app);
      const item = {
        uuid,
        status: "delivered",
        timestamp: 1795000000,
        wam_id: "wamid.X1",
        to: "38761444555",
        extra: { a: [1] },
      };
      await postWebhook(t.app, { statuses: [item] });
      const { rows } = await t.db.pool.query(
        "SELECT payload, source FROM message_events WHERE uuid = $1 AND status = 'DELIVERED'",
        [uuid],
      );
      expect(rows).toEqual([{ payload: item, source: "webhook" }]);
      const wam = await t.db.pool.query("SELECT wam_id FROM messages WHERE uuid = $1", [uuid]);
      expect(wam.rows[0].wam_id).toBe("wamid.X1");
    });

    it("when an item carries the OTP `text` (as Betatel's delivery records do), then the payload is kept without it", async () => {
      const uuid = await aSentMessage(t.app);
      const item = { uuid, status: "READ", text: "Your code is 482910", to: "38761444555" };
      const res = await postWebhook(t.app, item);
      expect(res.body.results).toEqual([{ uuid, status: "READ", outcome: "applied" }]);
      const { rows } = await t.db.pool.query("SELECT payload FROM message_events WHERE uuid = $1 AND status = 'READ'", [
        uuid,
      ]);
      expect(rows).toEqual([{ payload: { uuid, status: "READ", to: "38761444555" } }]);
      expect(JSON.stringify(rows)).not.toContain("482910");
    });

    it("when a status repeats with another timestamp, then it is a duplicate and exactly one event row exists", async () => {
      const uuid = await aSentMessage(t.app);
      await postWebhook(t.app, { uuid, status: "SENT", timestamp: minutesAgo(3).toISOString() });
      const again = await postWebhook(t.app, { uuid, status: "SENT", timestamp: minutesAgo(2).toISOString() });
      expect(again.body.results[0].outcome).toBe("duplicate");
      const { rows } = await t.db.pool.query(
        "SELECT count(*)::int AS n FROM message_events WHERE uuid = $1 AND status = 'SENT'",
        [uuid],
      );
      expect(rows[0].n).toBe(1);
    });
  });
});
