import { createServer, type IncomingHttpHeaders, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { Webhook } from "standardwebhooks";

export interface ReceivedCallback {
  headers: IncomingHttpHeaders;
  /** The event, parsed only after its Standard Webhooks signature verified. */
  event: { type: string; timestamp: string; data: Record<string, unknown> & { uuid: string; sequence: number } };
}

export interface CallbackReceiver {
  url: string;
  /** Events answered with a 2xx whose signature verified, in arrival order. */
  received: ReceivedCallback[];
  /** Requests whose signature did not verify. */
  rejected: number;
  /** Every request, answered or not. */
  requests: number;
  /** How to answer the next requests (default 204). */
  respond: (res: ServerResponse) => void;
  /** The signing secret to verify with (set once the endpoint is added). */
  secret: string;
  waitFor(count: number, timeoutMs?: number): Promise<ReceivedCallback[]>;
  close(): Promise<void>;
}

/** A product team's real receiver: verifies every signature with the standardwebhooks library. */
export async function startCallbackReceiver(): Promise<CallbackReceiver> {
  const receiver: CallbackReceiver = {
    url: "",
    received: [],
    rejected: 0,
    requests: 0,
    respond: (res) => res.writeHead(204).end(),
    secret: "",
    async waitFor(count, timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      while (receiver.received.length < count) {
        if (Date.now() > deadline) {
          throw new Error(
            `expected ${count} callbacks, got ${receiver.received.length} (${receiver.rejected} rejected)`,
          );
        }
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      return receiver.received;
    },
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      receiver.requests++;
      receiver.respond(res);
      if (res.statusCode >= 300) return;
      try {
        const event = new Webhook(receiver.secret).verify(Buffer.concat(chunks).toString("utf8"), {
          "webhook-id": String(req.headers["webhook-id"]),
          "webhook-timestamp": String(req.headers["webhook-timestamp"]),
          "webhook-signature": String(req.headers["webhook-signature"]),
        }) as ReceivedCallback["event"];
        receiver.received.push({ headers: req.headers, event });
      } catch {
        receiver.rejected++;
      }
    });
  });
  server.keepAliveTimeout = 1000;
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  receiver.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/otp-status`;
  return receiver;
}
