import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { aTeam } from "./support/callbacks.ts";
import { aPhoneNumber, startTestApp, type TestApp } from "./support/test-app.ts";
import { checkCode, codesSentTo, lastCodeSentTo, startVerification, wrongCode } from "./support/verifications.ts";

// Two apps over one database: two instances of the service.
const owner = aTeam();
let a: TestApp;
let b: TestApp;

beforeAll(async () => {
  a = await startTestApp({ API_KEYS: owner.apiKeys, DATABASE_POOL_SIZE: "10" });
  b = await startTestApp({ API_KEYS: owner.apiKeys, DATABASE_POOL_SIZE: "10" });
});
afterAll(async () => {
  await a.close();
  await b.close();
});

async function aVerification() {
  const to = aPhoneNumber();
  const res = await startVerification(a.app, owner.auth, to).expect(201);
  return { id: res.body.id as string, to, code: lastCodeSentTo(a.betatel, to) };
}

const instance = (i: number) => (i % 2 === 0 ? a : b);
const attempts = async (id: string) =>
  (await a.db.pool.query("SELECT attempts, status FROM verifications WHERE id = $1", [id])).rows[0];

describe("verifications under concurrency, over two instances", () => {
  it("when the right code is checked twice at once, then exactly one check approves it", async () => {
    const { id, code } = await aVerification();
    const answers = await Promise.all([0, 1].map((i) => checkCode(instance(i).app, owner.auth, id, code)));
    expect(answers.map((res) => res.status).sort()).toEqual([200, 409]);
    expect(answers.find((res) => res.status === 200)?.body.status).toBe("approved");
  });

  it("when 50 wrong codes arrive at once, then exactly 5 are counted and none approves", async () => {
    const { id, code } = await aVerification();
    const answers = await Promise.all(
      Array.from({ length: 50 }, (_, i) => checkCode(instance(i).app, owner.auth, id, wrongCode(code, 1 + (i % 9)))),
    );
    const counted = answers.filter((res) => res.status === 200);
    expect(counted).toHaveLength(5);
    expect(answers.filter((res) => res.status === 409)).toHaveLength(45);
    expect(counted.map((res) => res.body.status).sort()).toEqual([
      "max_attempts_reached",
      "pending",
      "pending",
      "pending",
      "pending",
    ]);
    expect(await attempts(id)).toEqual({ attempts: 5, status: "max_attempts_reached" });
  });

  it("when wrong codes race a resend, then no check is lost", async () => {
    const { id, to, code } = await aVerification();
    await a.db.pool.query(
      "UPDATE verifications SET last_sent_at = last_sent_at - interval '31 seconds' WHERE id = $1",
      [id],
    );
    const [resends, checks] = await Promise.all([
      Promise.all([0, 1, 2].map((i) => startVerification(instance(i).app, owner.auth, to))),
      Promise.all([0, 1, 2].map((i) => checkCode(instance(i + 1).app, owner.auth, id, wrongCode(code, i + 1)))),
    ]);
    expect(checks.map((res) => res.status)).toEqual([200, 200, 200]);
    expect(resends.map((res) => res.status).sort()).toEqual([200, 429, 429]);
    expect(await attempts(id)).toEqual({ attempts: 3, status: "pending" });
    expect([...codesSentTo(a.betatel, to), ...codesSentTo(b.betatel, to)]).toEqual([code, code]);
  });

  it("when one number is asked for from two instances at once, then one verification exists and one code went out", async () => {
    const to = aPhoneNumber();
    const answers = await Promise.all([0, 1, 2, 3].map((i) => startVerification(instance(i).app, owner.auth, to)));
    expect(answers.map((res) => res.status).sort()).toEqual([201, 429, 429, 429]);
    expect(new Set(answers.map((res) => res.body.id)).size).toBe(1);
    expect(codesSentTo(a.betatel, to).length + codesSentTo(b.betatel, to).length).toBe(1);
  });
});
