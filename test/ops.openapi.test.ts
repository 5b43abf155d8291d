import { Validator } from "@seriousme/openapi-schema-validator";
import { Ajv2020 } from "ajv/dist/2020.js";
import ajvFormats from "ajv-formats";
import request from "supertest";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { aPhoneNumber, startTestApp, type TestApp } from "./support/test-app.ts";

// ajv-formats is CommonJS: under ESM its plugin is the `default` property of the module.
const addFormats = ajvFormats.default;

interface Operation {
  parameters?: Array<{ name: string; in: string }>;
  requestBody?: { content: Record<string, { example?: unknown }> };
  responses: Record<string, { content?: Record<string, { schema: unknown }> }>;
}
type Document = { openapi: string; paths: Record<string, Record<string, Operation>>; components: unknown };

let t: TestApp;
let doc: Document;
beforeAll(async () => {
  t = await startTestApp({ API_KEYS: "doc-key", WEBHOOK_SECRET: "doc-secret" });
  const res = await request(t.app).get("/openapi.json");
  expect(res.status).toBe(200);
  doc = res.body;
});
afterAll(() => t.close());

describe("GET /openapi.json", () => {
  it("is a valid OpenAPI 3.1 document", async () => {
    expect(doc.openapi).toMatch(/^3\.1\./);
    const result = await new Validator().validate(doc as never);
    expect(result.errors ?? []).toEqual([]);
    expect(result.valid).toBe(true);
  });

  it("types what clients generate from: integer limit, the text's length, the webhook status in any case", () => {
    const schemas = (
      doc.components as { schemas: Record<string, { properties: Record<string, Record<string, unknown>> }> }
    ).schemas;
    const limit = doc.paths["/v1/messages"]?.get?.parameters?.find((parameter) => parameter.name === "limit");
    expect((limit as { schema?: unknown } | undefined)?.schema).toMatchObject({
      type: "integer",
      minimum: 1,
      maximum: 200,
    });
    expect(schemas.SendMessageRequest?.properties.text).toMatchObject({ minLength: 1, maxLength: 4096 });
    const status = new RegExp(String(schemas.StatusUpdate?.properties.status?.pattern));
    expect(["DELIVERED", "delivered", "Read"].every((value) => status.test(value))).toBe(true);
    expect(["LOST", "DELIVERED!", ""].some((value) => status.test(value))).toBe(false);
  });

  it("documents the product API and the webhook, with their security and problem answers", () => {
    expect(Object.keys(doc.paths)).toEqual(
      expect.arrayContaining([
        "/v1/messages",
        "/v1/messages/{uuid}",
        "/v1/messages/{uuid}/stream",
        "/messages/{uuid}",
        "/webhooks/betatel",
      ]),
    );
    const list = doc.paths["/v1/messages"]?.get;
    expect(list?.parameters?.map((parameter) => parameter.name)).toEqual([
      "status",
      "to",
      "createdFrom",
      "createdTo",
      "limit",
      "cursor",
      "reference",
    ]);
    expect(doc.paths["/v1/messages"]?.post?.responses["400"]?.content).toHaveProperty(["application/problem+json"]);
    // The abuse limits' answers: 429 with Retry-After (key or recipient), 422 for a country not allowed.
    const send = doc.paths["/v1/messages"]?.post?.responses as Record<
      string,
      { description: string; headers?: object }
    >;
    expect(send["429"]?.description).toMatch(/`rate_limited`.*`recipient_rate_limited`/);
    expect(send["429"]?.headers).toHaveProperty("Retry-After");
    expect(send["422"]?.description).toContain("`country_not_allowed`");
    expect(doc.paths["/webhooks/betatel"]?.post).toHaveProperty("security");
  });

  it("when each documented operation is called, then it answers a documented status and a body matching its schema", async () => {
    const ajv = new Ajv2020({ strict: false, allErrors: true });
    addFormats(ajv);
    ajv.addSchema({ $id: "openapi.json", components: doc.components });

    const sent = await request(t.app)
      .post("/v1/messages")
      .set("x-api-key", "doc-key")
      .send({ to: aPhoneNumber(), text: "Your code is 482910" });
    const uuid: string = sent.body.uuid;
    const checked: string[] = [];

    for (const [path, operations] of Object.entries(doc.paths)) {
      for (const [method, operation] of Object.entries(operations)) {
        // A stream never ends; test/live.test.ts reads its events. Here: documented as a stream.
        if (operation.responses["200"]?.content?.["text/event-stream"]) continue;
        const url = path.replace("{uuid}", encodeURIComponent(uuid));
        let call = request(t.app)
          [method as "get" | "post"](url)
          .set("x-api-key", "doc-key")
          .set("x-webhook-secret", "doc-secret");
        const example = operation.requestBody?.content["application/json"]?.example;
        if (example !== undefined) call = call.send(example as object);
        const res = await call;

        const documented = operation.responses[String(res.status)];
        expect(documented, `${method.toUpperCase()} ${path} answered ${res.status}: ${res.text}`).toBeDefined();
        if (res.status === 200 || res.status === 201) {
          const [mediaType, media] = Object.entries(documented?.content ?? {})[0] ?? [];
          expect(res.headers["content-type"]).toContain(mediaType);
          const schema = JSON.parse(
            JSON.stringify(media?.schema).replaceAll('"#/components', '"openapi.json#/components'),
          );
          const validate = ajv.compile(schema);
          const body = mediaType === "application/json" ? res.body : res.text;
          expect(validate(body) ? [] : validate.errors, `${method.toUpperCase()} ${path}`).toEqual([]);
        }
        checked.push(`${method.toUpperCase()} ${path} ${res.status}`);
      }
    }
    expect(checked).toEqual(
      expect.arrayContaining([
        "POST /v1/messages 201",
        "GET /v1/messages 200",
        "GET /v1/messages/{uuid} 200",
        "GET /messages/{uuid} 200",
        "POST /webhooks/betatel 200",
        "GET /metrics 200",
      ]),
    );
  });

  it("documents the watch token as an alternative to the API key on the stream and the long-poll only", () => {
    const withToken = Object.entries(doc.paths).flatMap(([path, operations]) =>
      Object.entries(operations)
        .filter(([, operation]) =>
          ((operation as { security?: Array<Record<string, unknown>> }).security ?? []).some((s) => "watchToken" in s),
        )
        .map(([method]) => `${method.toUpperCase()} ${path}`),
    );
    expect(withToken.sort()).toEqual(["GET /v1/messages/{uuid}", "GET /v1/messages/{uuid}/stream"]);
    for (const path of ["/v1/messages/{uuid}", "/v1/messages/{uuid}/stream"]) {
      expect(doc.paths[path]?.get?.parameters?.map((parameter) => parameter.name)).toContain("watch");
      expect(doc.paths[path]?.get?.responses).toHaveProperty("401");
    }
    expect(doc.components).toMatchObject({
      securitySchemes: { watchToken: { type: "apiKey", in: "query", name: "watch" } },
      schemas: { CreatedMessage: { required: expect.arrayContaining(["watchUrl"]) } },
    });
  });

  it("when a documented operation is called without credentials, then 401 is a documented answer", async () => {
    for (const [path, method] of [
      ["/v1/messages", "get"],
      ["/v1/messages", "post"],
      ["/webhooks/betatel", "post"],
    ] as const) {
      const res = await request(t.app)[method](path).send({});
      expect(res.status).toBe(401);
      expect(doc.paths[path]?.[method]?.responses).toHaveProperty("401");
    }
  });
});
