import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import pino from "pino";
import { Webhook } from "standardwebhooks";
import { afterEach, describe, expect, it } from "vitest";
import { createSandboxBetatel, type SandboxBetatel, type SandboxOptions } from "../../src/betatel/sandbox.ts";

interface Received {
  headers: IncomingHttpHeaders;
  body: string;
  json: { uuid: string; status: string; timestamp: string; error?: unknown };
  arrivedAt: number;
  answeredAt?: number;
}

/** A local stand-in for the service's webhook; the first answer can be made slow. */
async function startReceiver(firstAnswerDelayMs = 0) {
  const received: Received[] = [];
  const server: Server = createServer((req, res) => {
    let body = "";
    req.on("data", (chunk) => {
      body += chunk;
    });
    req.on("end", () => {
      const item: Received = { headers: req.headers, body, json: JSON.parse(body), arrivedAt: Date.now() };
      received.push(item);
      setTimeout(
        () => {
          item.answeredAt = Date.now();
          res.end("{}");
        },
        received.length === 1 ? firstAnswerDelayMs : 0,
      );
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/webhooks/betatel`;
  return { url, received, close: () => new Promise((resolve) => server.close(resolve)) };
}

let receiver: Awaited<ReturnType<typeof startReceiver>>;
const sandboxes: SandboxBetatel[] = [];
afterEach(async () => {
  for (const sandbox of sandboxes.splice(0)) sandbox.stop();
  await receiver?.close();
});

const aSandbox = (overrides: Partial<SandboxOptions> = {}): SandboxBetatel => {
  const sandbox = createSandboxBetatel(options(overrides));
  sandboxes.push(sandbox);
  return sandbox;
};

const options = (overrides: Partial<SandboxOptions> = {}): SandboxOptions => ({
  webhookUrl: () => receiver.url,
  webhookSecret: undefined,
  signingSecret: undefined,
  stepMs: 10,
  failureRate: 0,
  logger: pino({ level: "silent" }),
  ...overrides,
});

const until = async (done: () => boolean) => {
  const deadline = Date.now() + 5000;
  while (!done() && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
};

describe("sandbox Betatel", () => {
  it("answers a ULID and posts SENT, DELIVERED, READ in order even when the webhook answers slowly", async () => {
    receiver = await startReceiver(200);
    const sandbox = aSandbox();

    const { uuid } = await sandbox.sendOtp({ to: "38761444555", text: "1234" });
    await until(() => receiver.received.length === 3);

    expect(uuid).toMatch(/^[0-9A-HJKMNP-TV-Z]{26}$/);
    expect(receiver.received.map((r) => [r.json.uuid, r.json.status])).toEqual([
      [uuid, "sent"],
      [uuid, "delivered"],
      [uuid, "read"],
    ]);
    // Each status leaves only after the previous one was answered: a slow SENT cannot be overtaken.
    const [sent, delivered] = receiver.received;
    expect(delivered?.arrivedAt).toBeGreaterThanOrEqual(sent?.answeredAt ?? Number.POSITIVE_INFINITY);
    expect(JSON.stringify(receiver.received.map((r) => r.body))).not.toContain("1234");
  });

  it("when a message falls in the failure share, then it posts SENT and then FAILED with a reason", async () => {
    receiver = await startReceiver();
    const sandbox = aSandbox({ failureRate: 0.5, random: () => 0.1 });

    await sandbox.sendOtp({ to: "38761444555", text: "1234" });
    await until(() => receiver.received.length === 2);
    await new Promise((resolve) => setTimeout(resolve, 50));

    expect(receiver.received.map((r) => r.json.status)).toEqual(["sent", "failed"]);
    expect(receiver.received[1]?.json.error).toMatchObject({ code: expect.any(String), message: expect.any(String) });
  });

  it("presents the webhook secret and a valid Standard Webhooks signature when they are configured", async () => {
    receiver = await startReceiver();
    const signingSecret = `whsec_${Buffer.from("a-test-signing-key-of-32-bytes!!").toString("base64")}`;
    const sandbox = aSandbox({ webhookSecret: "s3cret", signingSecret });

    await sandbox.sendOtp({ to: "38761444555", text: "1234" });
    await until(() => receiver.received.length >= 1);

    const [first] = receiver.received;
    expect(first?.headers["x-webhook-secret"]).toBe("s3cret");
    const verify = () => new Webhook(signingSecret).verify(first?.body ?? "", first?.headers as Record<string, string>);
    expect(verify).not.toThrow();
  });

  it("when stopped, then the statuses not posted yet are never posted", async () => {
    receiver = await startReceiver();
    const sandbox = aSandbox({ stepMs: 100 });

    await sandbox.sendOtp({ to: "38761444555", text: "1234" });
    sandbox.stop();
    await new Promise((resolve) => setTimeout(resolve, 400));

    expect(receiver.received).toEqual([]);
  });
});
