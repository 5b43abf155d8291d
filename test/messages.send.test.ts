import request from "supertest";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { aPhoneNumber, startTestApp, TEST_BETATEL, type TestApp } from "./support/test-app.ts";

let t: TestApp;
beforeAll(async () => {
  t = await startTestApp();
});
afterAll(() => t.close());
beforeEach(() => t.betatel.reset());

describe("POST /v1/messages", () => {
  it("when Betatel accepts, then it answers 201 with the uuid and GET shows it PENDING", async () => {
    const to = aPhoneNumber();
    const res = await request(t.app)
      .post("/v1/messages")
      .send({ to: `+${to}`, text: "Your code is 482910" });

    expect(res.status).toBe(201);
    expect(res.body).toEqual({ uuid: expect.any(String), to, status: "PENDING", createdAt: expect.any(String) });
    expect(res.headers.location).toBe(`/v1/messages/${res.body.uuid}`);

    const [call] = t.betatel.requests;
    expect(t.betatel.requests).toHaveLength(1);
    expect(call?.url).toBe("/api/v1/connect-hub/whatsapp/otp");
    expect(call?.headers["x-api-key"]).toBe(TEST_BETATEL.apiKey);
    expect(call?.headers["x-account-id"]).toBe(TEST_BETATEL.accountId);
    expect(call?.headers["content-type"]).toBe("application/json");
    expect(call?.json).toEqual({ to, text: "Your code is 482910" });

    const read = await request(t.app).get(`/v1/messages/${res.body.uuid}`);
    expect(read.status).toBe(200);
    expect(read.body).toMatchObject({ uuid: res.body.uuid, to, status: "PENDING", sentAt: null, error: null });
    expect(read.body.events).toEqual([
      expect.objectContaining({ status: "PENDING", outcome: "applied", source: "api" }),
    ]);
  });
});
