import request from "supertest";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { parseMetrics, sampleValue } from "./support/prometheus.ts";
import { aPhoneNumber, aUuid, startTestApp, type TestApp } from "./support/test-app.ts";

const GROWTH = "growth-key-1";
const BILLING = "billing-key-1";
const BARE = "bare-key-1";

let t: TestApp;
beforeAll(async () => {
  t = await startTestApp({ API_KEYS: `growth:${GROWTH},billing:${BILLING},${BARE}` });
});
afterAll(() => t.close());
beforeEach(() => t.betatel.reset());

const as = (key: string) => ({ authorization: `Bearer ${key}` });
const send = (key: string, body: Record<string, unknown>, headers: Record<string, string> = {}) =>
  request(t.app)
    .post("/v1/messages")
    .set({ ...as(key), ...headers })
    .send(body);

/** The first Server-Sent Event of a stream (or the error answer), then the connection is closed. */
async function firstStreamEvent(app: TestApp["app"], path: string, key: string) {
  const server = app.listen(0);
  try {
    const { port } = server.address() as { port: number };
    const abort = new AbortController();
    const res = await fetch(`http://127.0.0.1:${port}${path}`, { headers: as(key), signal: abort.signal });
    if (res.status !== 200) return { status: res.status, body: await res.json() };
    const reader = res.body?.getReader();
    let text = "";
    while (!text.includes("\n\n")) {
      const chunk = await reader?.read();
      if (!chunk || chunk.done) break;
      text += Buffer.from(chunk.value).toString("utf8");
    }
    abort.abort();
    const data = /^data: (.*)$/m.exec(text)?.[1];
    return { status: 200, body: data ? JSON.parse(data) : undefined };
  } finally {
    server.closeAllConnections();
    server.close();
  }
}

describe("teams: every read is limited to the caller's team", () => {
  it("when growth sends a message, then growth reads it on every path and billing gets exactly the unknown-uuid answer", async () => {
    const reference = `user-${aUuid()}`;
    const sent = await send(GROWTH, {
      to: aPhoneNumber(),
      text: "Your code is 101010",
      reference,
      metadata: { flow: "signup", attempt: 2, mobile: true },
    });
    expect(sent.status).toBe(201);
    const uuid: string = sent.body.uuid;
    const unknown = aUuid();

    // The owner: by uuid, the short path, the list (by reference), the long-poll and the stream.
    const own = await request(t.app).get(`/v1/messages/${uuid}`).set(as(GROWTH));
    expect(own.status).toBe(200);
    expect(own.body).toMatchObject({ uuid, reference, metadata: { flow: "signup", attempt: 2, mobile: true } });
    expect(own.body.verificationId).toBeNull();
    const { watchUrl: _own, ...ownMessage } = own.body;
    const { watchUrl: _short, ...shortPath } = (await request(t.app).get(`/messages/${uuid}`).set(as(GROWTH))).body;
    expect(shortPath).toEqual(ownMessage);
    const listed = await request(t.app).get("/v1/messages").query({ reference }).set(as(GROWTH));
    expect(listed.body.items.map((item: { uuid: string }) => item.uuid)).toEqual([uuid]);
    expect(listed.body.items[0]).toMatchObject({ reference, metadata: { flow: "signup", attempt: 2, mobile: true } });
    const polled = await request(t.app)
      .get(`/v1/messages/${uuid}`)
      .query({ waitFor: "PENDING", timeout: "1" })
      .set(as(GROWTH));
    expect(polled.status).toBe(200);
    expect(polled.body.uuid).toBe(uuid);
    expect(await firstStreamEvent(t.app, `/v1/messages/${uuid}/stream`, GROWTH)).toMatchObject({
      status: 200,
      body: { uuid, reference },
    });

    // Another team: each path answers as it does for a uuid that does not exist at all.
    const sameAsUnknown = async (path: (id: string) => string, query: Record<string, string> = {}) => {
      const other = await request(t.app).get(path(uuid)).query(query).set(as(BILLING));
      const missing = await request(t.app).get(path(unknown)).query(query).set(as(BILLING));
      expect(other.status).toBe(404);
      expect(other.headers["content-type"]).toBe(missing.headers["content-type"]);
      expect({ ...other.body, detail: other.body.detail.replace(uuid, "X") }).toEqual({
        ...missing.body,
        detail: missing.body.detail.replace(unknown, "X"),
      });
      expect(other.body.code).toBe("message_not_found");
    };
    await sameAsUnknown((id) => `/v1/messages/${id}`);
    await sameAsUnknown((id) => `/messages/${id}`);
    await sameAsUnknown((id) => `/v1/messages/${id}`, { waitFor: "DELIVERED", timeout: "1" });
    const stream = await firstStreamEvent(t.app, `/v1/messages/${uuid}/stream`, BILLING);
    expect(stream).toMatchObject({ status: 404, body: { code: "message_not_found" } });

    const theirs = await request(t.app).get("/v1/messages").query({ reference }).set(as(BILLING));
    expect(theirs.status).toBe(200);
    expect(theirs.body.items).toEqual([]);
    const bare = await request(t.app).get("/v1/messages").query({ to: sent.body.to }).set(as(BARE));
    expect(bare.body.items).toEqual([]);
  });

  it("when a key has no team in API_KEYS, then its messages belong to team `default` (in the table and the views)", async () => {
    const sent = await send(BARE, { to: aPhoneNumber(), text: "Your code is 202020" });
    const other = await send(GROWTH, { to: aPhoneNumber(), text: "Your code is 202021" });

    const rows = await t.db.pool.query<{ uuid: string; team: string }>(
      "SELECT uuid, team FROM messages WHERE uuid = ANY($1) ORDER BY team",
      [[sent.body.uuid, other.body.uuid]],
    );
    expect(rows.rows).toEqual([
      { uuid: sent.body.uuid, team: "default" },
      { uuid: other.body.uuid, team: "growth" },
    ]);
    const stuck = await t.db.pool.query<{ team: string }>("SELECT team FROM ops_stuck_messages WHERE uuid = $1", [
      other.body.uuid,
    ]);
    expect(stuck.rows).toEqual([{ team: "growth" }]);
  });

  it("when a request carries two different keys, then 401 (no guessing which team is meant); the same key twice is fine", async () => {
    const both = await request(t.app)
      .get("/v1/messages")
      .set({ ...as(BILLING), "x-api-key": GROWTH });
    expect(both.status).toBe(401);
    expect(both.body.code).toBe("unauthorized");
    const wrongAndRight = await request(t.app)
      .get("/v1/messages")
      .set({ ...as(GROWTH), "x-api-key": "not-a-key" });
    expect(wrongAndRight.status).toBe(401);
    await request(t.app)
      .get("/v1/messages")
      .set({ ...as(GROWTH), "x-api-key": GROWTH })
      .expect(200);
  });

  it("when two teams use the same Idempotency-Key, then each gets its own message and Betatel is called twice", async () => {
    const key = `same-${aUuid()}`;
    const body = { to: aPhoneNumber(), text: "Your code is 303030" };

    const growth = await send(GROWTH, body, { "idempotency-key": key });
    const billing = await send(BILLING, body, { "idempotency-key": key });
    const growthAgain = await send(GROWTH, body, { "idempotency-key": key });

    expect(growth.status).toBe(201);
    expect(billing.status).toBe(201);
    expect(billing.body.uuid).not.toBe(growth.body.uuid);
    // The replay is the first answer, with a fresh watchUrl (its token is issued anew).
    const { watchUrl: _first, ...firstAnswer } = growth.body;
    const { watchUrl: _again, ...replayed } = growthAgain.body;
    expect(replayed).toEqual(firstAnswer);
    expect(t.betatel.requests).toHaveLength(2);
    expect((await request(t.app).get(`/v1/messages/${billing.body.uuid}`).set(as(GROWTH))).status).toBe(404);
  });

  it("when Betatel answers billing's send with the uuid of growth's message, then billing gets 502 and never growth's message", async () => {
    const growthTo = aPhoneNumber();
    const growth = await send(GROWTH, { to: growthTo, text: "Your code is 515151" }).expect(201);
    const key = `taken-${aUuid()}`;
    const body = { to: aPhoneNumber(), text: "Your code is 525252" };
    const billingSend = () => send(BILLING, body, { "idempotency-key": key });

    t.betatel.reply({ status: 200, body: { uuid: growth.body.uuid } });
    const billing = await billingSend();
    const billingAgain = await billingSend();

    expect(billing.status).toBe(502);
    expect(billing.body).toMatchObject({ code: "provider_unavailable" });
    expect(billing.text).not.toContain(growthTo);
    expect(billing.body.watchUrl).toBeUndefined();
    // The OTP may have gone out: a retry with the key replays the answer and sends nothing.
    expect(billingAgain.status).toBe(502);
    expect(t.betatel.requests).toHaveLength(2);
    expect((await request(t.app).get(`/v1/messages/${growth.body.uuid}`).set(as(BILLING))).status).toBe(404);
    const mine = await request(t.app).get(`/v1/messages/${growth.body.uuid}`).set(as(GROWTH)).expect(200);
    expect(mine.body).toMatchObject({ to: growthTo, status: "PENDING" });
    expect(t.logs.text).toContain("betatel answered a uuid that another message already has");
  });

  it("when Betatel answers a later send to the same number with the uuid of the earlier one, then 502, not the earlier message", async () => {
    const to = aPhoneNumber();
    const first = await send(GROWTH, { to, text: "Your code is 555111" }).expect(201);

    t.betatel.reply({ status: 200, body: { uuid: first.body.uuid } });
    const later = await send(GROWTH, { to, text: "Your code is 555222", reference: "later-send" });

    expect(later.status).toBe(502);
    expect(later.body.code).toBe("provider_unavailable");
    const listed = await request(t.app).get("/v1/messages?reference=later-send").set(as(GROWTH)).expect(200);
    expect(listed.body.items).toEqual([]);
  });

  it("when Betatel answers a send of the same team with a uuid already used for another number, then 502 too", async () => {
    const first = await send(GROWTH, { to: aPhoneNumber(), text: "Your code is 535353" }).expect(201);

    t.betatel.reply({ status: 200, body: { uuid: first.body.uuid } });
    const second = await send(GROWTH, { to: aPhoneNumber(), text: "Your code is 545454" });

    expect(second.status).toBe(502);
    expect(second.body.uuid).toBeUndefined();
  });

  it("when sends are answered, then otp_sends_total counts them per team", async () => {
    await send(BILLING, { to: aPhoneNumber(), text: "Your code is 404040" });
    await send(BILLING, { to: "12", text: "Your code is 404041" });

    const metrics = parseMetrics((await request(t.app).get("/metrics")).text);
    expect(sampleValue(metrics, "otp_sends_total", { team: "billing", status: "201" })).toBeGreaterThanOrEqual(1);
    expect(sampleValue(metrics, "otp_sends_total", { team: "billing", status: "400" })).toBe(1);
  });
});

describe("POST /v1/messages with reference and metadata", () => {
  const bad: Array<{ name: string; extra: Record<string, unknown>; path: string }> = [
    { name: "an empty reference", extra: { reference: "" }, path: "reference" },
    { name: "a reference of 129 characters", extra: { reference: "r".repeat(129) }, path: "reference" },
    { name: "a reference with a space", extra: { reference: "user 1" }, path: "reference" },
    { name: "a reference that is a number", extra: { reference: 42 }, path: "reference" },
    { name: "metadata that is an array", extra: { metadata: ["a"] }, path: "metadata" },
    { name: "metadata with a nested object", extra: { metadata: { a: { b: 1 } } }, path: "metadata.a" },
    { name: "metadata with a null value", extra: { metadata: { a: null } }, path: "metadata.a" },
    {
      name: "metadata with 21 keys",
      extra: { metadata: Object.fromEntries(Array.from({ length: 21 }, (_, i) => [`k${i}`, i])) },
      path: "metadata",
    },
    { name: "metadata over 2 KiB", extra: { metadata: { a: "x".repeat(2050) } }, path: "metadata" },
  ];

  it.each(bad)(
    "when it carries $name, then 400 validation_failed names $path and Betatel is not called",
    async ({ extra, path }) => {
      const res = await send(GROWTH, { to: aPhoneNumber(), text: "Your code is 505050", ...extra });

      expect(res.status).toBe(400);
      expect(res.body.code).toBe("validation_failed");
      expect(res.body.errors.map((error: { path: string }) => error.path)).toContain(path);
      expect(t.betatel.requests).toHaveLength(0);
    },
  );

  it("when the reference uses every allowed character and metadata has 20 keys, then both are stored as given", async () => {
    const reference = `Az09._:@-${"r".repeat(119)}`;
    const metadata = Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`k${i}`, i % 2 ? `v${i}` : i]));
    const sent = await send(GROWTH, { to: aPhoneNumber(), text: "Your code is 606060", reference, metadata });

    expect(sent.status).toBe(201);
    const read = await request(t.app).get(`/v1/messages/${sent.body.uuid}`).set(as(GROWTH));
    expect(read.body.reference).toBe(reference);
    expect(read.body.metadata).toEqual(metadata);
  });
});
