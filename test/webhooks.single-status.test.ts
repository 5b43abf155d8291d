import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TRANSITIONS } from "../src/tracking/state-machine.ts";
import { STATUSES } from "../src/tracking/status.ts";
import { insertMessage } from "./support/message-rows.ts";
import { startTestApp, type TestApp } from "./support/test-app.ts";
import { embedded } from "./support/test-database.ts";
import { postWebhook, readMessage } from "./support/webhook.ts";

let t: TestApp;
beforeAll(async () => {
  t = await startTestApp();
});
afterAll(() => t.close());

describe("the database's copy of the transition table (used for single-status webhooks)", () => {
  it("when every (current, incoming) pair is decided in SQL, then all 36 cells equal the service's table", async () => {
    const { rows } = await t.db.pool.query<{ cur: string; inc: string; decision: string }>(
      `SELECT cur, inc, status_decision(cur, inc) AS decision
       FROM unnest($1::message_status[]) AS cur CROSS JOIN unnest($1::message_status[]) AS inc`,
      [STATUSES],
    );
    const inSql = new Map(rows.map((row) => [`${row.cur}>${row.inc}`, row.decision]));
    expect(inSql.size).toBe(36);
    for (const [current, incoming, decision] of TRANSITIONS) {
      expect([current, incoming, inSql.get(`${current}>${incoming}`)]).toEqual([current, incoming, decision]);
    }
  });
});

describe("POST /webhooks/betatel with one status", () => {
  it("when each status arrives once, then the single-status path records it like the batch path would", async () => {
    const { uuid } = await insertMessage(t.db.pool);
    const post = async (item: Record<string, unknown>) => (await postWebhook(t.app, item)).body.results[0].outcome;
    expect(await post({ uuid, status: "DELIVERED", timestamp: 1795000010, wam_id: "wamid.9" })).toBe("applied");
    expect(await post({ uuid, status: "SENT", timestamp: 1795000000 })).toBe("stale");
    expect(await post({ uuid, status: "FAILED", error: { code: 131026, message: "undeliverable" } })).toBe("rejected");
    expect(await post({ uuid, status: "SENT" })).toBe("duplicate");
    const message = await readMessage(t.app, uuid);
    expect(message).toMatchObject({
      status: "DELIVERED",
      sentAt: new Date(1795000000_000).toISOString(),
      deliveredAt: new Date(1795000010_000).toISOString(),
      failedAt: null,
      error: null,
    });
    const { rows } = await t.db.pool.query("SELECT wam_id FROM messages WHERE uuid = $1", [uuid]);
    expect(rows[0].wam_id).toBe("wamid.9");
  });

  it("when FAILED is applied alone, then its reason is stored", async () => {
    const { uuid } = await insertMessage(t.db.pool, { status: "SENT" });
    await postWebhook(t.app, { uuid, status: "failed", error: { code: "131026", title: "undeliverable" } });
    expect(await readMessage(t.app, uuid)).toMatchObject({
      status: "FAILED",
      error: { code: "131026", message: "undeliverable" },
    });
  });

  it.skipIf(embedded)(
    "when a status is a repeat, then it is answered without waiting for the message row's lock",
    async () => {
      const { uuid } = await insertMessage(t.db.pool);
      expect((await postWebhook(t.app, { uuid, status: "SENT" })).body.results[0].outcome).toBe("applied");
      const holder = await t.db.pool.connect();
      try {
        await holder.query("BEGIN");
        await holder.query("SELECT 1 FROM messages WHERE uuid = $1 FOR UPDATE", [uuid]);
        const repeat = postWebhook(t.app, { uuid, status: "SENT" }).then((res) => res.body.results[0].outcome);
        const first = await Promise.race([repeat, new Promise((resolve) => setTimeout(resolve, 3000, "blocked"))]);
        expect(first).toBe("duplicate");
      } finally {
        await holder.query("ROLLBACK");
        holder.release();
      }
    },
  );
});
