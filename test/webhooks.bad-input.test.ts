import request from "supertest";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestApp, type TestApp } from "./support/test-app.ts";
import { aSentMessage, postWebhook, readMessage, WEBHOOK } from "./support/webhook.ts";

let t: TestApp;
beforeAll(async () => {
  t = await startTestApp();
});
afterAll(() => t.close());

/** The message is still PENDING with only its PENDING event. */
async function expectUnchanged(uuid: string) {
  expect((await readMessage(t.app, uuid)).status).toBe("PENDING");
  const { rows } = await t.db.pool.query("SELECT count(*)::int AS n FROM message_events WHERE uuid = $1", [uuid]);
  expect(rows[0].n).toBe(1);
}

describe("POST /webhooks/betatel with bad input", () => {
  it("when the body is not JSON, then it answers 400 malformed_json", async () => {
    const uuid = await aSentMessage(t.app);
    const res = await postWebhook(t.app, `{"uuid": "${uuid}", "status": "SENT"`);
    expect(res.status).toBe(400);
    expect(res.headers["content-type"]).toMatch(/application\/problem\+json/);
    expect(res.body).toMatchObject({ status: 400, code: "malformed_json" });
    await expectUnchanged(uuid);
  });

  it("when the body is empty, then it answers 400", async () => {
    const res = await request(t.app).post(WEBHOOK).set("content-type", "application/json");
    expect(res.status).toBe(400);
  });

  it.each(["text/plain", "application/x-www-form-urlencoded", "application/xml"])(
    "when the content type is %s, then it answers 415 and stores nothing",
    async (type) => {
      const uuid = await aSentMessage(t.app);
      const res = await request(t.app)
        .post(WEBHOOK)
        .set("content-type", type)
        .send(JSON.stringify({ uuid, status: "SENT" }));
      expect(res.status).toBe(415);
      expect(res.body.code).toBe("unsupported_media_type");
      await expectUnchanged(uuid);
    },
  );

  it("when the body is over 1 MiB, then it answers 413 and stores nothing", async () => {
    const uuid = await aSentMessage(t.app);
    const res = await postWebhook(t.app, { uuid, status: "SENT", padding: "x".repeat(1024 * 1024) });
    expect(res.status).toBe(413);
    expect(res.body.code).toBe("payload_too_large");
    await expectUnchanged(uuid);
  });

  it("when a batch has 1001 items, then it answers 413 and stores nothing; 1000 items are accepted", async () => {
    const uuid = await aSentMessage(t.app);
    const items = Array.from({ length: 1001 }, () => ({ uuid, status: "SENT" }));
    const res = await postWebhook(t.app, { statuses: items });
    expect(res.status).toBe(413);
    await expectUnchanged(uuid);

    const ok = await postWebhook(t.app, items.slice(1));
    expect(ok.status).toBe(200);
    expect(ok.body.results).toHaveLength(1000);
    expect(ok.body.results.filter((r: { outcome: string }) => r.outcome === "applied")).toHaveLength(1);
  });

  it.each([
    ["null", null],
    ["a number", 42],
    ["a string", "SENT"],
    ["statuses that is not an array", { statuses: { uuid: "x", status: "SENT" } }],
  ])("when the body is %s, then it answers 400 validation_failed", async (_case, body) => {
    const res = await postWebhook(t.app, JSON.stringify(body));
    expect(res.status).toBe(400);
    expect(res.body.code).toBe("validation_failed");
  });

  it.each([
    ["an unknown status", (uuid: string) => ({ uuid, status: "ARRIVED" }), "status"],
    ["no status", (uuid: string) => ({ uuid }), "status"],
    ["no uuid", () => ({ status: "SENT" }), "uuid"],
    ["a numeric uuid", () => ({ uuid: 123, status: "SENT" }), "uuid"],
    ["a numeric status", (uuid: string) => ({ uuid, status: 1 }), "status"],
    ["an unreadable timestamp", (uuid: string) => ({ uuid, status: "SENT", timestamp: "yesterday" }), "timestamp"],
    [
      "an ISO timestamp without a zone",
      (uuid: string) => ({ uuid, status: "SENT", timestamp: "2026-11-20T10:00:00" }),
      "timestamp",
    ],
    [
      "a timestamp far in the future",
      (uuid: string) => ({ uuid, status: "SENT", timestamp: Date.now() + 7 * 86_400_000 }),
      "timestamp",
    ],
    ["a boolean timestamp", (uuid: string) => ({ uuid, status: "SENT", timestamp: true }), "timestamp"],
    ["a numeric error", (uuid: string) => ({ uuid, status: "FAILED", error: 131026 }), "error"],
    ["a numeric wam_id", (uuid: string) => ({ uuid, status: "SENT", wam_id: 7 }), "wam_id"],
    ["a NUL character", (uuid: string) => ({ uuid, status: "SENT", note: "a\u0000b" }), "(body)"],
  ])(
    "when a single item has %s, then it answers 400 naming the field and changes nothing",
    async (_case, item, path) => {
      const uuid = await aSentMessage(t.app);
      const res = await postWebhook(t.app, item(uuid));
      expect(res.status).toBe(400);
      expect(res.body.code).toBe("validation_failed");
      expect(res.body.errors).toContainEqual(expect.objectContaining({ path }));
      await expectUnchanged(uuid);
    },
  );

  it("when one item of a batch is invalid, then it is `invalid` with field paths and the others are processed", async () => {
    const [a, b] = [await aSentMessage(t.app), await aSentMessage(t.app)];
    const res = await postWebhook(t.app, {
      statuses: [
        { uuid: a, status: "SENT" },
        { uuid: b, status: "LOST" },
        { uuid: b, status: "DELIVERED" },
        "not an object",
      ],
    });
    expect(res.status).toBe(200);
    expect(res.body.results).toEqual([
      { uuid: a, status: "SENT", outcome: "applied" },
      { uuid: b, status: "LOST", outcome: "invalid", errors: [expect.objectContaining({ path: "statuses.1.status" })] },
      { uuid: b, status: "DELIVERED", outcome: "applied" },
      { uuid: null, status: null, outcome: "invalid", errors: [expect.objectContaining({ path: "statuses.3" })] },
    ]);
    expect((await readMessage(t.app, a)).status).toBe("SENT");
    expect((await readMessage(t.app, b)).status).toBe("DELIVERED");
    const { rows } = await t.db.pool.query("SELECT status FROM message_events WHERE uuid = $1 ORDER BY status", [b]);
    expect(rows.map((r) => r.status)).toEqual(["PENDING", "DELIVERED"]);
  });

  it("when every item of a batch is invalid, then it answers 200 with only `invalid` results and stores nothing", async () => {
    const uuid = await aSentMessage(t.app);
    const res = await postWebhook(t.app, [{ uuid, status: "nope" }, { status: "SENT" }]);
    expect(res.status).toBe(200);
    expect(res.body.results.map((r: { outcome: string }) => r.outcome)).toEqual(["invalid", "invalid"]);
    await expectUnchanged(uuid);
  });
});
