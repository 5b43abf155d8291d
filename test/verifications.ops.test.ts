import request from "supertest";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { addEndpoint } from "../src/callbacks/repository.ts";
import { endpointSigningSecret } from "../src/callbacks/signing-secret.ts";
import { expireVerifications } from "../src/verifications/repository.ts";
import { type CallbackReceiver, startCallbackReceiver } from "./support/callback-receiver.ts";
import { aTeam, aWorker, TEST_CALLBACKS_SECRET } from "./support/callbacks.ts";
import { openIsolatedDatabase } from "./support/isolated-database.ts";
import { aPhoneNumber, startTestAppOn, type TestApp } from "./support/test-app.ts";
import { checkCode, lastCodeSentTo, startVerification, wrongCode } from "./support/verifications.ts";

const owner = aTeam();
let t: TestApp;
let receiver: CallbackReceiver;

beforeAll(async () => {
  // A database of its own: the callback worker claims every team's deliveries.
  t = await startTestAppOn(await openIsolatedDatabase(), { API_KEYS: owner.apiKeys });
  receiver = await startCallbackReceiver();
});
afterAll(async () => {
  await receiver.close();
  await t.close();
});

async function aVerification() {
  const to = aPhoneNumber();
  const res = await startVerification(t.app, owner.auth, to).expect(201);
  return { id: res.body.id as string, to, code: lastCodeSentTo(t.betatel, to), uuid: res.body.messages[0].uuid };
}

describe("verifications, seen by ops and by the team", () => {
  it("when running in sandbox mode, then the code is logged so the flow can be tried by hand", async () => {
    const sandbox = await startTestAppOn(await openIsolatedDatabase(1), {
      API_KEYS: owner.apiKeys,
      BETATEL_API_KEY: "",
      BETATEL_ACCOUNT_ID: "",
    });
    try {
      const to = aPhoneNumber();
      const res = await startVerification(sandbox.app, owner.auth, to).expect(201);
      const line = sandbox.logs.lines
        .map((text) => JSON.parse(text))
        .find((entry) => entry.verificationId === res.body.id && entry.code);
      expect(line?.code).toBe(lastCodeSentTo(sandbox.betatel, to));
      expect(line?.msg).toMatch(/^SANDBOX/);
    } finally {
      await sandbox.close();
    }
  });

  it("when a verification is approved, then a signed verification.status callback reports it", async () => {
    const endpoint = await addEndpoint(t.db.pool, {
      team: owner.team,
      url: receiver.url,
      events: ["verification.status"],
    });
    receiver.secret = endpointSigningSecret(TEST_CALLBACKS_SECRET, endpoint.id, endpoint.secretVersion);
    const { id, code, uuid } = await aVerification();
    await request(t.app).post("/webhooks/betatel").send({ uuid, status: "SENT" }).expect(200);
    await checkCode(t.app, owner.auth, id, code).expect(200);
    await aWorker(t.db).runOnce();
    const [event] = await receiver.waitFor(1);
    // Only the verification's own event: the endpoint did not ask for message.status.
    expect(receiver.requests).toBe(1);
    expect(event?.event).toMatchObject({
      type: "verification.status",
      data: { id, status: "approved", team: owner.team, sequence: 2, checksLeft: 5 },
    });
    expect(JSON.stringify(event?.event)).not.toContain(code);
    await t.db.pool.query("DELETE FROM callback_endpoints WHERE id = $1", [endpoint.id]);
  });

  it("when verifications are started, delivered, read, approved and expired, then ops_verification_funnel counts them", async () => {
    const delivered = await aVerification();
    const read = await aVerification();
    const approved = await aVerification();
    const expired = await aVerification();
    const maxed = await aVerification();
    await request(t.app)
      .post("/webhooks/betatel")
      .send([
        { uuid: delivered.uuid, status: "DELIVERED" },
        { uuid: read.uuid, status: "READ" },
        { uuid: approved.uuid, status: "DELIVERED" },
      ])
      .expect(200);
    await checkCode(t.app, owner.auth, approved.id, approved.code).expect(200);
    for (let i = 1; i <= 5; i++) await checkCode(t.app, owner.auth, maxed.id, wrongCode(maxed.code, i)).expect(200);
    await t.db.pool.query("UPDATE verifications SET expires_at = now() - interval '1 second' WHERE id = $1", [
      expired.id,
    ]);
    expect(await expireVerifications(t.db.pool)).toBe(1);

    const { rows } = await t.db.pool.query(
      `SELECT sum(started)::int AS started, sum(delivered)::int AS delivered, sum(read)::int AS read,
              sum(approved)::int AS approved, sum(expired)::int AS expired,
              sum(max_attempts_reached)::int AS max_attempts_reached,
              max(median_seconds_to_approval) AS median
         FROM ops_verification_funnel WHERE team = $1 AND hour >= now() - interval '2 hours'`,
      [owner.team],
    );
    // The callback test's verification (approved, its message SENT) counts too.
    expect(rows[0]).toMatchObject({
      started: 6,
      delivered: 3,
      read: 1,
      approved: 2,
      expired: 1,
      max_attempts_reached: 1,
    });
    expect(rows[0].median).toBeGreaterThanOrEqual(0);
    expect(rows[0].median).toBeLessThan(60);
  });

  it("when verifications start and end, then otp_verifications_total counts them", async () => {
    const before = await request(t.app).get("/metrics").expect(200);
    const count = (text: string, event: string) =>
      Number(new RegExp(`otp_verifications_total\\{event="${event}"\\} (\\d+)`).exec(text)?.[1] ?? 0);
    const { id, code } = await aVerification();
    await checkCode(t.app, owner.auth, id, code).expect(200);
    const after = await request(t.app).get("/metrics").expect(200);
    expect(count(after.text, "started") - count(before.text, "started")).toBe(1);
    expect(count(after.text, "approved") - count(before.text, "approved")).toBe(1);
  });
});
