import request from "supertest";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Database } from "../src/db/database.ts";
import { encodeCursor, parseListQuery } from "../src/messages/list.ts";
import { buildListQuery } from "../src/messages/repository.ts";
import { openIsolatedDatabase } from "./support/isolated-database.ts";
import { aQuietHour, insertMessage, type MessageRow, plus } from "./support/message-rows.ts";
import { aPhoneNumber, startTestApp, type TestApp } from "./support/test-app.ts";

let t: TestApp;
beforeAll(async () => {
  t = await startTestApp({ API_KEYS: "list-key" });
});
afterAll(() => t.close());

const list = (query: Record<string, string>) =>
  request(t.app).get("/v1/messages").query(query).set("authorization", "Bearer list-key");
const uuids = (body: { items: Array<{ uuid: string }> }) => body.items.map((item) => item.uuid);
const newestFirst = (rows: MessageRow[]) =>
  [...rows]
    .sort((a, b) => b.createdAt.getTime() - a.createdAt.getTime() || (b.uuid < a.uuid ? -1 : 1))
    .map((row) => row.uuid);

describe("GET /v1/messages", () => {
  it("when filtered by `to` (written any way), then it answers that number's messages newest first, without events", async () => {
    const to = aPhoneNumber();
    const hour = aQuietHour();
    const rows = [
      await insertMessage(t.db.pool, { to, createdAt: plus(hour, 1000) }),
      await insertMessage(t.db.pool, {
        to,
        createdAt: plus(hour, 3000),
        status: "DELIVERED",
        sentAt: plus(hour, 3500),
      }),
      await insertMessage(t.db.pool, { to, createdAt: plus(hour, 2000) }),
    ];
    await insertMessage(t.db.pool, { createdAt: plus(hour, 2500) }); // another number

    const res = await list({ to: `+${to.slice(0, 3)} ${to.slice(3, 5)}-${to.slice(5)}` });

    expect(res.status).toBe(200);
    expect(uuids(res.body)).toEqual(newestFirst(rows));
    expect(res.body.nextCursor).toBeNull();
    expect(res.body.items[0]).toEqual({
      uuid: rows[1]?.uuid,
      to,
      status: "DELIVERED",
      createdAt: plus(hour, 3000).toISOString(),
      updatedAt: plus(hour, 3000).toISOString(),
      sentAt: plus(hour, 3500).toISOString(),
      deliveredAt: null,
      readAt: null,
      failedAt: null,
      expiredAt: null,
      error: null,
      reference: null,
      metadata: null,
      verificationId: null,
    });
  });

  it("when filtered by status and a createdFrom/createdTo window, then only those rows come back (from inclusive, to exclusive)", async () => {
    const hour = aQuietHour();
    const failedIn = await insertMessage(t.db.pool, {
      status: "FAILED",
      createdAt: hour,
      failedAt: plus(hour, 10),
      errorCode: "131026",
      errorMessage: "Message undeliverable",
    });
    const failedLater = await insertMessage(t.db.pool, { status: "FAILED", createdAt: plus(hour, 59 * 60_000) });
    await insertMessage(t.db.pool, { status: "READ", createdAt: plus(hour, 1000) });
    await insertMessage(t.db.pool, { status: "FAILED", createdAt: plus(hour, 3_600_000) }); // at createdTo: out
    await insertMessage(t.db.pool, { status: "FAILED", createdAt: plus(hour, -1) }); // before createdFrom: out

    const res = await list({
      status: "FAILED",
      createdFrom: hour.toISOString(),
      createdTo: plus(hour, 3_600_000).toISOString().replace("Z", "+00:00"),
    });

    expect(res.status).toBe(200);
    expect(uuids(res.body)).toEqual([failedLater.uuid, failedIn.uuid]);
    expect(res.body.items[1].error).toEqual({ code: "131026", message: "Message undeliverable" });
  });

  it("when a date without time is given, then it means midnight UTC", async () => {
    const to = aPhoneNumber();
    const before = await insertMessage(t.db.pool, { to, createdAt: new Date("2004-02-29T23:59:59.999Z") });
    const after = await insertMessage(t.db.pool, { to, createdAt: new Date("2004-03-01T00:00:00.000Z") });

    const from = await list({ to, createdFrom: "2004-03-01" });
    const to_ = await list({ to, createdTo: "2004-03-01" });

    expect(uuids(from.body)).toEqual([after.uuid]);
    expect(uuids(to_.body)).toEqual([before.uuid]);
  });

  it("when paging while new messages are sent, then the pages together hold every older row exactly once", async () => {
    const to = aPhoneNumber();
    const start = new Date(Date.now() - 60_000);
    // Two rows share a millisecond: the uuid breaks the tie, and the page boundary falls between them.
    const older = [
      await insertMessage(t.db.pool, { to, createdAt: plus(start, 1) }),
      await insertMessage(t.db.pool, { to, createdAt: plus(start, 2) }),
      await insertMessage(t.db.pool, { to, createdAt: plus(start, 3) }),
      await insertMessage(t.db.pool, { to, createdAt: plus(start, 3) }),
      await insertMessage(t.db.pool, { to, createdAt: plus(start, 4) }),
    ];
    const expected = newestFirst(older);

    const page1 = await list({ to, limit: "2" });
    expect(page1.status).toBe(200);
    expect(uuids(page1.body)).toEqual(expected.slice(0, 2));
    expect(page1.body.nextCursor).toEqual(expect.any(String));

    for (let i = 0; i < 3; i++) {
      const sent = await request(t.app)
        .post("/v1/messages")
        .set("authorization", "Bearer list-key")
        .send({ to, text: "Your code is 111222" });
      expect(sent.status).toBe(201);
    }

    const page2 = await list({ to, limit: "2", cursor: page1.body.nextCursor });
    const page3 = await list({ to, limit: "2", cursor: page2.body.nextCursor });

    expect(uuids(page2.body)).toEqual(expected.slice(2, 4));
    expect(uuids(page3.body)).toEqual(expected.slice(4));
    expect(page3.body.nextCursor).toBeNull();

    const fresh = await list({ to });
    expect(fresh.body.items).toHaveLength(8);
    expect(uuids(fresh.body).slice(3)).toEqual(expected);
  });

  it("when no limit is given, then pages hold 50", async () => {
    const to = aPhoneNumber();
    const start = new Date(Date.now() - 3_600_000);
    await t.db.pool.query(
      `INSERT INTO messages (uuid, "to", text_length, created_at)
       SELECT $1 || lpad(i::text, 3, '0'), $2, 6, $3::timestamptz + i * interval '1 second' FROM generate_series(1, 51) i`,
      [`LIST${to}-`, to, start],
    );
    const page1 = await list({ to });
    const page2 = await list({ to, cursor: page1.body.nextCursor });
    expect(page1.body.items).toHaveLength(50);
    expect(page2.body.items).toHaveLength(1);
    expect(page2.body.nextCursor).toBeNull();
  });

  it.each([
    [{ status: "DONE" }, "query.status"],
    [{ status: "delivered" }, "query.status"],
    [{ to: "12" }, "query.to"],
    [{ createdFrom: "yesterday" }, "query.createdFrom"],
    [{ createdTo: "2026-11-27T10:00:00" }, "query.createdTo"],
    [{ createdTo: "2026-02-30" }, "query.createdTo"],
    [{ limit: "0" }, "query.limit"],
    [{ limit: "201" }, "query.limit"],
    [{ limit: "abc" }, "query.limit"],
    [{ limit: "1.5" }, "query.limit"],
    [{ cursor: "garbage!" }, "query.cursor"],
    [{ cursor: Buffer.from('["not a date","x"]').toString("base64url") }, "query.cursor"],
    [{ cursor: Buffer.from("{}").toString("base64url") }, "query.cursor"],
    [{ sort: "asc" }, "query.sort"],
  ])("when the query is %j, then 400 validation_failed names %s", async (query, path) => {
    const res = await list(query);
    expect(res.status).toBe(400);
    expect(res.headers["content-type"]).toMatch(/^application\/problem\+json/);
    expect(res.body).toMatchObject({ status: 400, code: "validation_failed" });
    expect(res.body.errors.map((error: { path: string }) => error.path)).toContain(path);
  });

  it("when a parameter is repeated, then 400 rather than picking one", async () => {
    const res = await request(t.app).get("/v1/messages?status=SENT&status=READ").set("x-api-key", "list-key");
    expect(res.status).toBe(400);
    expect(res.body.errors[0].path).toBe("query.status");
  });

  it("when the API key is missing, then 401", async () => {
    const res = await request(t.app).get("/v1/messages");
    expect(res.status).toBe(401);
    expect(res.body.code).toBe("unauthorized");
  });
});

describe("the list query plan", () => {
  // On a database of its own with realistic statistics (20,000 messages over all statuses and many numbers),
  // so the planner's choice does not depend on what other test files happen to have written.
  let db: Database;
  beforeAll(async () => {
    db = await openIsolatedDatabase(1);
    await db.pool.query(`
      INSERT INTO messages (uuid, "to", status, text_length, created_at, updated_at, team, reference)
      SELECT 'plan-' || n, '3876144' || lpad((n % 2000)::text, 4, '0'),
             (ARRAY['READ','READ','READ','READ','READ','READ','READ','DELIVERED','SENT','FAILED'])[1 + n % 10]::message_status,
             6, now() - n * interval '1 second', now(),
             (ARRAY['default','default','growth','billing'])[1 + n % 4], 'user-' || (n % 5000)
      FROM generate_series(1, 20000) AS n`);
    await db.pool.query("ANALYZE messages");
  });
  afterAll(() => db.close());

  const cursor = encodeCursor({ createdAt: new Date(), uuid: "01JV5V54KPYK9GB29265EQRZ2P" });
  const explain = async (filters: Record<string, string>) => {
    const { text, values } = buildListQuery({ ...parseListQuery({ ...filters, cursor }), limit: 50 }, "default");
    const { rows } = await db.pool.query(`EXPLAIN ${text}`, values);
    return rows.map((row) => row["QUERY PLAN"]).join("\n");
  };

  // Half the rows are team `default`: reading (created_at, uuid) and skipping other teams' rows is as good as the
  // team's own index; either way the rows come in order and the scan stops at the limit.
  it("without filters, then it reads a (created_at, uuid) index in order and stops at the limit: no sort", async () => {
    const plan = await explain({});
    expect(plan).toMatch(/^Limit/);
    expect(plan).toMatch(/Index Scan using messages_(team_)?created_at_uuid_idx on messages/);
    expect(plan).not.toMatch(/Sort|Seq Scan/);
  });

  it("with a reference, then the (team, reference, created_at, uuid) index finds its few rows: no sequential scan", async () => {
    const plan = await explain({ reference: "user-42" });
    expect(plan).toMatch(/^Limit/);
    expect(plan).toMatch(/(Index Scan using|Bitmap Index Scan on) messages_team_reference_created_at_uuid_idx/);
    expect(plan).not.toMatch(/Seq Scan/);
  });

  // With a filter the planner picks among the indexes by the statistics (for a number with ten messages,
  // a bitmap scan and a sort of those ten is cheapest); what matters is that no plan reads the whole table.
  it.each([[{ status: "SENT" }], [{ to: "38761440042" }], [{ status: "READ", to: "38761440042" }]])(
    "with filters %j, then an index serves it, never a sequential scan",
    async (filters) => {
      const plan = await explain(filters);
      expect(plan).toMatch(/^Limit/);
      expect(plan).toMatch(/Index Scan (Backward )?using messages_\w+ on messages|Bitmap Index Scan on messages_\w+/);
      expect(plan).not.toMatch(/Seq Scan/);
    },
  );
});
