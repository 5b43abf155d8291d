import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import createClient from "openapi-fetch";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { paths } from "./generated/api.ts";
import { aPhoneNumber, startTestApp, type TestApp } from "./support/test-app.ts";

// A client generated from the served OpenAPI document (openapi-typescript types + openapi-fetch), used as an
// integrating team would: the suite's type check fails if the document and this use of it drift apart.
let t: TestApp;
let server: Server;
let client: ReturnType<typeof createClient<paths>>;

beforeAll(async () => {
  t = await startTestApp({ API_KEYS: "client-key" });
  server = createServer(t.app);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  client = createClient<paths>({
    baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    headers: { authorization: "Bearer client-key" },
  });
});
afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
  await t.close();
});

describe("a client generated from GET /openapi.json", () => {
  it("when it sends, reads and lists, then the typed answers are what the service returns", async () => {
    const to = aPhoneNumber();
    const sent = await client.POST("/v1/messages", { body: { to, text: "Your code is 1" } });
    expect(sent.response.status).toBe(201);
    const uuid = sent.data?.uuid ?? "";
    expect(sent.data?.status).toBe("PENDING");

    const read = await client.GET("/v1/messages/{uuid}", { params: { path: { uuid } } });
    expect(read.data?.events.map((event) => event.status)).toEqual(["PENDING"]);

    const list = await client.GET("/v1/messages", { params: { query: { to, limit: 1 } } });
    expect(list.data?.items.map((item) => item.uuid)).toEqual([uuid]);

    const missing = await client.GET("/v1/messages/{uuid}", { params: { path: { uuid: "01UNKNOWN" } } });
    expect(missing.error?.code).toBe("message_not_found");
  });

  it("when it starts and checks a verification, then the typed answers match", async () => {
    const started = await client.POST("/v1/verifications", { body: { to: aPhoneNumber() } });
    expect(started.response.status).toBe(201);
    const id = started.data?.id ?? "";
    const checked = await client.POST("/v1/verifications/{id}/check", {
      params: { path: { id } },
      body: { code: "0000000" }, // seven digits: never the six-digit code
    });
    expect(checked.data?.checksLeft).toBe(4);
  });
});
