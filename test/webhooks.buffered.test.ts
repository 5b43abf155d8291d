import request from "supertest";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pgRunner } from "../src/db/sql.ts";
import { settleBuffered, settleStragglers } from "../src/tracking/apply.ts";
import { aPhoneNumber, aUuid, startTestApp, type TestApp } from "./support/test-app.ts";
import { embedded } from "./support/test-database.ts";
import { postWebhook, readMessage } from "./support/webhook.ts";

let t: TestApp;
beforeAll(async () => {
  t = await startTestApp();
});
afterAll(() => t.close());

/** Waits (up to 3 s) until a session waits for the per-uuid lock of `uuid`. */
async function waitForLockWaiter(uuid: string) {
  for (let i = 0; i < 60; i++) {
    const { rows } = await t.db.pool.query(
      `SELECT count(*)::int AS n FROM pg_locks
       WHERE locktype = 'advisory' AND NOT granted
         AND ((classid::bigint << 32) | objid::bigint) = hashtextextended($1, 0)`,
      [uuid],
    );
    if (rows[0].n > 0) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** POST /v1/messages with the fake Betatel answering `uuid`. */
async function sendAs(uuid: string) {
  const to = aPhoneNumber();
  t.betatel.reply({ status: 200, body: { uuid, to } });
  const res = await request(t.app).post("/v1/messages").send({ to, text: "Your code is 482910" });
  expect(res.status).toBe(201);
  expect(res.body.uuid).toBe(uuid);
  return res;
}

describe("POST /webhooks/betatel before the message row exists", () => {
  it("when a status arrives for an unknown uuid, then it is buffered, and applied when the message is stored", async () => {
    const uuid = aUuid();
    const early = await postWebhook(t.app, { uuid, status: "DELIVERED", timestamp: "2026-11-27T10:00:00Z" });
    expect(early.body.results).toEqual([{ uuid, status: "DELIVERED", outcome: "buffered" }]);
    expect((await request(t.app).get(`/v1/messages/${uuid}`)).status).toBe(404);

    await sendAs(uuid);
    const message = await readMessage(t.app, uuid);
    expect(message).toMatchObject({ status: "DELIVERED", deliveredAt: "2026-11-27T10:00:00.000Z" });
    expect(message.events).toContainEqual(
      expect.objectContaining({ status: "DELIVERED", outcome: "applied", source: "webhook" }),
    );
  });

  it("when several statuses are buffered, then they are settled as if they had arrived after the row (same times: arrival order), with FAILED's reason", async () => {
    const uuid = aUuid();
    await postWebhook(t.app, [
      { uuid, status: "FAILED", error: { code: "131026", message: "undeliverable" } },
      { uuid, status: "SENT" },
    ]);
    await sendAs(uuid);
    const message = await readMessage(t.app, uuid);
    expect(message).toMatchObject({
      status: "FAILED",
      sentAt: expect.any(String),
      failedAt: expect.any(String),
      error: { code: "131026", message: "undeliverable" },
    });
    expect(message.events.map((e: { status: string; outcome: string }) => `${e.status}:${e.outcome}`).sort()).toEqual([
      "FAILED:applied",
      "PENDING:applied",
      "SENT:stale",
    ]);
  });

  it("when a buffered status is repeated, then the repeat is a duplicate", async () => {
    const uuid = aUuid();
    await postWebhook(t.app, { uuid, status: "SENT" });
    const again = await postWebhook(t.app, { uuid, status: "sent" });
    expect(again.body.results[0].outcome).toBe("duplicate");
  });

  it("when a PENDING status arrives before the message row, then storing the message still succeeds", async () => {
    const uuid = aUuid();
    await postWebhook(t.app, [
      { uuid, status: "PENDING" },
      { uuid, status: "SENT" },
    ]);
    await sendAs(uuid);
    const message = await readMessage(t.app, uuid);
    expect(message.status).toBe("SENT");
    expect(message.events.map((e: { status: string }) => e.status).sort()).toEqual(["PENDING", "SENT"]);
  });

  it("when a buffered status was left unsettled (the process stopped before settling it), then the sender's retry settles it", async () => {
    const uuid = aUuid();
    await postWebhook(t.app, { uuid, status: "SENT" });
    // The message row appears without the send path settling (as after a crash between the two steps).
    await t.db.pool.query(`INSERT INTO messages (uuid, "to", text_length) VALUES ($1, '38761444555', 6)`, [uuid]);
    const retry = await postWebhook(t.app, { uuid, status: "SENT" });
    expect(retry.body.results[0].outcome).toBe("duplicate");
    expect((await readMessage(t.app, uuid)).status).toBe("SENT");
  });

  it("when a buffered status was left unsettled and the sender never retries, then the periodic sweep settles it", async () => {
    const uuid = aUuid();
    await postWebhook(t.app, { uuid, status: "DELIVERED" });
    await t.db.pool.query(`INSERT INTO messages (uuid, "to", text_length) VALUES ($1, '38761444555', 6)`, [uuid]);

    expect(await settleStragglers(t.db.pool)).toContain(uuid);

    const message = await readMessage(t.app, uuid);
    expect(message.status).toBe("DELIVERED");
    expect(message.events).toEqual([expect.objectContaining({ status: "DELIVERED", outcome: "applied" })]);
  });

  it("when the webhook and the send path store the same uuid at the same moment, then the status is always applied", async () => {
    // The fake Betatel answers each number with its own uuid, so several races can run at once.
    const uuidFor = new Map<string, string>();
    t.betatel.always((req) => {
      const to = (req.json as { to: string }).to;
      return { status: 200, body: { uuid: uuidFor.get(to), to } };
    });
    const race = async (i: number) => {
      const [uuid, to, status] = [aUuid(), aPhoneNumber(), i % 2 ? "READ" : "FAILED"];
      uuidFor.set(to, uuid);
      const [hook, sent] = await Promise.all([
        postWebhook(t.app, { uuid, status }),
        request(t.app).post("/v1/messages").send({ to, text: "Your code is 482910" }),
      ]);
      expect([hook.status, sent.status, sent.body.uuid]).toEqual([200, 201, uuid]);
      return { uuid, status, final: (await readMessage(t.app, uuid)).status };
    };
    const results = [];
    for (let round = 0; round < 20; round++) {
      results.push(...(await Promise.all(Array.from({ length: 5 }, (_, k) => race(round * 5 + k)))));
    }
    t.betatel.reset();
    expect(results.filter((r) => r.final !== r.status)).toEqual([]);
    const { rows } = await t.db.pool.query(
      "SELECT count(*)::int AS n FROM message_events WHERE outcome = 'buffered' AND uuid = ANY($1)",
      [results.map((r) => r.uuid)],
    );
    expect(rows[0].n).toBe(0);
  }, 60_000);

  it.skipIf(embedded)(
    "when the webhook stores a status while the message row's transaction is settling, then it applies the status after that commit",
    async () => {
      // The exact interleaving the per-uuid lock exists for, made deterministic: the send path's transaction has
      // inserted the row and settled (nothing buffered yet), and has not committed when the webhook's event lands.
      const uuid = aUuid();
      const client = await t.db.pool.connect();
      try {
        await client.query("BEGIN");
        await client.query(`INSERT INTO messages (uuid, "to", text_length) VALUES ($1, '38761444555', 6)`, [uuid]);
        expect((await settleBuffered(pgRunner(client), uuid)).size).toBe(0);
        const hook = postWebhook(t.app, { uuid, status: "DELIVERED" }).then((res) => res);
        await waitForLockWaiter(uuid);
        await client.query("COMMIT");
        expect((await hook).body.results[0].outcome).toBe("applied");
      } finally {
        client.release();
      }
      expect((await readMessage(t.app, uuid)).status).toBe("DELIVERED");
    },
  );

  it.skipIf(embedded)(
    "when a batch holding the uuid's lock stores that uuid's PENDING while the message is being stored, then neither waits on the other",
    async () => {
      const uuid = aUuid();
      // What a batch repeating this uuid does: take its lock first, then insert its events wave by wave.
      const batch = await t.db.pool.connect();
      try {
        await batch.query("BEGIN");
        await batch.query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", [uuid]);
        const sending = sendAs(uuid);
        await waitForLockWaiter(uuid);
        await batch.query(
          `INSERT INTO message_events (uuid, status, outcome, occurred_at, source)
           VALUES ($1, 'PENDING', 'buffered', now(), 'webhook') ON CONFLICT DO NOTHING`,
          [uuid],
        );
        await batch.query("COMMIT");
        await sending;
      } finally {
        batch.release();
      }
      const message = await readMessage(t.app, uuid);
      expect(message.events).toEqual([expect.objectContaining({ status: "PENDING", outcome: "applied" })]);
    },
  );

  it("when two batches carry one unknown uuid's statuses in opposite orders at the same moment, then both answer 200", async () => {
    // Both insert the same (uuid, status) keys in opposite orders across waves: Postgres breaks the deadlock, the loser is retried.
    for (let i = 0; i < 3; i++) {
      const [a, b] = [aUuid(), aUuid()];
      const forward = [a, b].flatMap((uuid) => [
        { uuid, status: "SENT" },
        { uuid, status: "DELIVERED" },
      ]);
      const backward = [...forward].reverse();
      const answers = await Promise.all([postWebhook(t.app, forward), postWebhook(t.app, backward)]);
      expect(answers.map((res) => res.status)).toEqual([200, 200]);
      await sendAs(a);
      expect(await readMessage(t.app, a)).toMatchObject({ status: "DELIVERED", sentAt: expect.any(String) });
    }
  });
});
