import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { createBetatelClient } from "../src/betatel/client.ts";
import { BetatelError } from "../src/betatel/errors.ts";
import { type FakeBetatel, startFakeBetatel } from "./support/fake-betatel.ts";
import { aDeliveryRecord } from "./support/reconcile-fixtures.ts";
import { aUuid, TEST_BETATEL } from "./support/test-app.ts";

let betatel: FakeBetatel;
beforeAll(async () => {
  betatel = await startFakeBetatel();
});
afterAll(() => betatel.close());
beforeEach(() => betatel.reset());

const client = () => createBetatelClient({ baseUrl: betatel.url, ...TEST_BETATEL, timeoutMs: 300 });
const failureOf = (promise: Promise<unknown>) =>
  promise.then(
    () => undefined,
    (error: unknown) => error as BetatelError,
  );

describe("Betatel client getDeliveryRecord", () => {
  it("when Betatel answers the record, then it returns it without the OTP text", async () => {
    const uuid = aUuid();
    betatel.reply({ status: 200, body: aDeliveryRecord(uuid) });

    const record = await client().getDeliveryRecord(uuid);

    expect(betatel.requests[0]).toMatchObject({
      method: "GET",
      url: `/api/v1/connect-hub/whatsapp/${uuid}/wdr`,
      headers: expect.objectContaining({ "x-api-key": TEST_BETATEL.apiKey, "x-account-id": TEST_BETATEL.accountId }),
    });
    expect(record).toEqual({
      uuid,
      wamId: `wamid.${uuid}`,
      to: "38761444555",
      status: "Delivered",
      timestamp: "2026-11-27T10:00:00.000Z",
      deliveryTimestamp: "2026-11-27T10:00:03.000Z",
      deliveryTime: 3,
      webhookDelivered: false,
      error: null,
    });
    expect(JSON.stringify(record)).not.toContain("482910");
  });

  it("when Betatel does not know the uuid (404), then it returns null", async () => {
    betatel.reply({ status: 404, body: { message: "not found" } });
    expect(await client().getDeliveryRecord(aUuid())).toBeNull();
  });

  it("when Betatel answers 429 with Retry-After, then the error carries the wait", async () => {
    betatel.reply({ status: 429, body: "slow down", headers: { "retry-after": "7" } });
    const error = await failureOf(client().getDeliveryRecord(aUuid()));
    expect(error).toBeInstanceOf(BetatelError);
    expect(error).toMatchObject({ failure: "unavailable", status: 429, retryAfterMs: 7000 });
  });

  it.each([
    [401, "auth_failed"],
    [500, "unavailable"],
  ])("when Betatel answers %i, then it fails with %s", async (status, failure) => {
    betatel.reply({ status, body: { message: "no" } });
    expect(await failureOf(client().getDeliveryRecord(aUuid()))).toMatchObject({ failure, status });
  });

  it("when the answer is not a delivery record, then it fails as unavailable", async () => {
    betatel.reply({ status: 200, body: { hello: "world" } });
    expect(await failureOf(client().getDeliveryRecord(aUuid()))).toMatchObject({ failure: "unavailable" });
  });

  it("when Betatel does not answer in time, then it fails with timeout", async () => {
    betatel.reply({ hang: true });
    expect(await failureOf(client().getDeliveryRecord(aUuid()))).toMatchObject({ failure: "timeout" });
  });
});
