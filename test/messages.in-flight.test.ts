import request from "supertest";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp } from "../src/app.ts";
import { createBetatelClient } from "../src/betatel/client.ts";
import { loadConfig } from "../src/config.ts";
import { createLogger } from "../src/http/logging.ts";
import { createInFlightSends } from "../src/messages/in-flight.ts";
import { aPhoneNumber, aUuid, startTestApp, TEST_BETATEL, type TestApp } from "./support/test-app.ts";

let t: TestApp;
beforeAll(async () => {
  t = await startTestApp();
});
afterAll(() => t.close());

/** The app as server.ts builds it, with the sends in flight tracked for shutdown. */
function appWithTrackedSends() {
  const inFlightSends = createInFlightSends();
  const config = loadConfig({
    NODE_ENV: "test",
    BETATEL_BASE_URL: t.betatel.url,
    BETATEL_API_KEY: TEST_BETATEL.apiKey,
    BETATEL_ACCOUNT_ID: TEST_BETATEL.accountId,
  });
  const betatel = createBetatelClient({ baseUrl: t.betatel.url, ...TEST_BETATEL, timeoutMs: 2000 });
  const app = createApp({ config, db: t.db, betatel, logger: createLogger("silent"), inFlightSends });
  return { app, inFlightSends };
}

describe("sends in flight at shutdown", () => {
  it("when shutdown drains, then it waits for a send in flight, reports one it must abandon, and refuses new sends with 503", async () => {
    t.betatel.reset();
    const { app, inFlightSends } = appWithTrackedSends();
    const uuid = aUuid();
    const to = aPhoneNumber();
    t.betatel.reply({ status: 200, body: { uuid, to }, delayMs: 600 });

    const sending = request(app)
      .post("/v1/messages")
      .set("Idempotency-Key", `drain-${uuid}`)
      .send({ to, text: "4321" })
      .then((res) => res);
    await new Promise((resolve) => setTimeout(resolve, 200));
    // A grace too short: the send is reported (masked number, its key), not silently dropped.
    const abandoned = await inFlightSends.drain(50);
    expect(abandoned).toEqual([
      expect.objectContaining({ to: expect.stringMatching(/^387\*+\d\d$/), idempotencyKey: `drain-${uuid}` }),
    ]);
    expect(JSON.stringify(abandoned)).not.toContain(to);
    // A grace long enough: drain returns when the send is done, and the send was answered and stored.
    expect(await inFlightSends.drain(5_000)).toEqual([]);
    const res = await sending;
    expect(res.status).toBe(201);

    const refused = await request(app).post("/v1/messages").send({ to: aPhoneNumber(), text: "4321" });
    expect(refused.status).toBe(503);
    expect(refused.body.code).toBe("shutting_down");
    expect(refused.headers["retry-after"]).toBeDefined();
    expect(t.betatel.requests).toHaveLength(1);
  });
});
