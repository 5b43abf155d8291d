import request from "supertest";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { anOtp } from "./support/message-tables.ts";
import { aPhoneNumber, startTestApp, type TestApp } from "./support/test-app.ts";

let t: TestApp;
beforeAll(async () => {
  t = await startTestApp({ LOG_LEVEL: "trace" });
});
afterAll(() => t.close());
beforeEach(() => t.betatel.reset());

const valid = () => ({ to: aPhoneNumber(), text: "Your code is 123456" });

const invalidBodies: { name: string; body: unknown; path: string }[] = [
  { name: "`to` is missing", body: { text: "1234" }, path: "to" },
  { name: "`text` is missing", body: { to: "38761444555" }, path: "text" },
  { name: "`to` is not a phone number", body: { to: "hello", text: "1234" }, path: "to" },
  { name: "`to` is too short to be valid", body: { to: "+387 61", text: "1234" }, path: "to" },
  { name: "`to` has no valid country code", body: { to: "+999 123 456 789", text: "1234" }, path: "to" },
  { name: "`to` has more than 15 digits", body: { to: "3876144455512345", text: "1234" }, path: "to" },
  { name: "`to` is a number, not a string", body: { to: 38761444555, text: "1234" }, path: "to" },
  { name: "`text` is a number, not a string", body: { to: "38761444555", text: 1234 }, path: "text" },
  { name: "`text` is empty", body: { to: "38761444555", text: "" }, path: "text" },
  { name: "`text` has 4097 characters", body: { to: "38761444555", text: "x".repeat(4097) }, path: "text" },
  { name: "`text` is null", body: { to: "38761444555", text: null }, path: "text" },
  { name: "an unknown field is sent", body: { to: "38761444555", text: "1234", priority: "high" }, path: "priority" },
  { name: "the body is an array", body: [{ to: "38761444555", text: "1234" }], path: "(body)" },
];

describe("POST /v1/messages with an invalid body", () => {
  it.each(invalidBodies)("when $name, then 400 validation_failed at `$path` and Betatel is not called", async (c) => {
    const res = await request(t.app)
      .post("/v1/messages")
      .send(c.body as object);

    expect(res.status).toBe(400);
    expect(res.headers["content-type"]).toMatch(/^application\/problem\+json/);
    expect(res.body).toMatchObject({ status: 400, code: "validation_failed" });
    expect(res.body.errors).toEqual([{ path: c.path, message: expect.any(String) }]);
    expect(t.betatel.requests).toHaveLength(0);
  });

  it("when both fields are wrong, then each gets its own error", async () => {
    const res = await request(t.app).post("/v1/messages").send({ to: "nope", text: "" });

    expect(res.status).toBe(400);
    expect(res.body.errors.map((error: { path: string }) => error.path).sort()).toEqual(["text", "to"]);
  });

  it("when `text` has exactly 4096 characters, then it is sent", async () => {
    const res = await request(t.app)
      .post("/v1/messages")
      .send({ to: aPhoneNumber(), text: "x".repeat(4096) });

    expect(res.status).toBe(201);
    expect(t.betatel.requests).toHaveLength(1);
  });

  it("when `text` is 4096 emoji (more UTF-16 units), then characters are counted, not units", async () => {
    const res = await request(t.app)
      .post("/v1/messages")
      .send({ to: aPhoneNumber(), text: "🔑".repeat(4096) });

    expect(res.status).toBe(201);
  });

  it("when the body is not JSON, then 400 and Betatel is not called", async () => {
    const res = await request(t.app).post("/v1/messages").set("Content-Type", "application/json").send('{"to": "3876');

    expect(res.status).toBe(400);
    expect(res.headers["content-type"]).toMatch(/^application\/problem\+json/);
    expect(t.betatel.requests).toHaveLength(0);
  });

  it("when the body is empty, then 400 and Betatel is not called", async () => {
    const res = await request(t.app).post("/v1/messages").set("Content-Type", "application/json");

    expect(res.status).toBe(400);
    expect(t.betatel.requests).toHaveLength(0);
  });

  it("when the content type is a JSON type with a suffix (application/vnd.api+json), then the body is read as JSON", async () => {
    const res = await request(t.app)
      .post("/v1/messages")
      .set("Content-Type", "application/vnd.api+json")
      .send(JSON.stringify(valid()));

    expect(res.status).toBe(201);
    expect(t.betatel.requests).toHaveLength(1);
  });

  it("when the content type is not JSON, then 415 and Betatel is not called", async () => {
    const res = await request(t.app)
      .post("/v1/messages")
      .set("Content-Type", "text/plain")
      .send(JSON.stringify(valid()));

    expect(res.status).toBe(415);
    expect(res.body.code).toBe("unsupported_media_type");
    expect(t.betatel.requests).toHaveLength(0);
  });

  it("when the body is over the limit, then 413 and Betatel is not called", async () => {
    const res = await request(t.app)
      .post("/v1/messages")
      .send({ ...valid(), text: "x".repeat(100 * 1024) });

    expect(res.status).toBe(413);
    expect(res.body.code).toBe("payload_too_large");
    expect(t.betatel.requests).toHaveLength(0);
  });

  it("when a request is refused, then neither the answer nor the logs carry the OTP text", async () => {
    const otp = anOtp();
    const res = await request(t.app).post("/v1/messages").send({ to: "nope", text: otp.text, extra: otp.text });

    expect(res.status).toBe(400);
    expect(JSON.stringify(res.body)).not.toContain(otp.code);
    expect(t.logs.text).not.toContain(otp.code);
  });
});
