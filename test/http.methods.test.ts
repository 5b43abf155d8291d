import request from "supertest";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestApp, type TestApp } from "./support/test-app.ts";

let t: TestApp;
beforeAll(async () => {
  t = await startTestApp();
});
afterAll(() => t.close());

describe("a documented path with the wrong method", () => {
  it.each([
    ["delete", "/v1/messages/01JV5V54KPYK9GB29265EQRZ2P", "GET, HEAD"],
    ["put", "/v1/messages", "POST, GET, HEAD"],
    ["post", "/healthz", "GET, HEAD"],
    ["get", "/webhooks/betatel", "POST"],
    ["patch", "/v1/verifications/ver_01JV5V54KPYK9GB29265EQRZ2P/check", "POST"],
  ] as const)("when %s %s, then 405 with Allow: %s", async (method, path, allow) => {
    const res = await request(t.app)[method](path);
    expect(res.status).toBe(405);
    expect(res.headers.allow).toBe(allow);
    expect(res.type).toBe("application/problem+json");
    expect(res.body.code).toBe("method_not_allowed");
  });

  it("when the path is not served at all, then 404 route_not_found", async () => {
    const res = await request(t.app).get("/v1/nothing-here");
    expect(res.status).toBe(404);
    expect(res.body.code).toBe("route_not_found");
  });
});
