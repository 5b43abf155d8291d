import { createServer, type IncomingHttpHeaders, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { ulid } from "ulid";

export interface RecordedRequest {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: string;
  json: unknown;
}

/** How the fake answers one request. The default is Betatel's success answer with a fresh uuid. */
export type Reply =
  | { status: number; body?: unknown; contentType?: string; delayMs?: number; headers?: Record<string, string> }
  | { hang: true }
  | { reset: true }
  | { stream: "endless" };

export interface FakeBetatel {
  url: string;
  requests: RecordedRequest[];
  /** Queue replies for the next requests (one each); after they are used, the default answers again. */
  reply(...replies: Reply[]): void;
  /** Set the answer for every request (until `reply` queues or `reset`). */
  always(reply: Reply | ((request: RecordedRequest) => Reply)): void;
  reset(): void;
  close(): Promise<void>;
}

export const success = (request: RecordedRequest): Reply => ({
  status: 200,
  body: { uuid: ulid(), to: (request.json as { to?: string } | undefined)?.to ?? "" },
});

/** A real local HTTP server standing in for Betatel: records every request and answers as told. */
export async function startFakeBetatel(): Promise<FakeBetatel> {
  const requests: RecordedRequest[] = [];
  let queue: Reply[] = [];
  let fallback: (request: RecordedRequest) => Reply = success;

  const send = (res: ServerResponse, reply: Reply, request: RecordedRequest) => {
    if ("hang" in reply) return; // never answers; the client's timeout must fire
    if ("reset" in reply) {
      res.socket?.destroy();
      return;
    }
    if ("stream" in reply) {
      res.writeHead(200, { "content-type": "application/json" });
      const timer = setInterval(() => res.write(" "), 5);
      res.on("close", () => clearInterval(timer));
      return;
    }
    const answer = () => {
      const body =
        reply.body === undefined ? "" : typeof reply.body === "string" ? reply.body : JSON.stringify(reply.body);
      res.writeHead(reply.status, {
        "content-type": reply.contentType ?? (typeof reply.body === "string" ? "text/plain" : "application/json"),
        ...reply.headers,
      });
      res.end(body);
    };
    if (reply.delayMs) setTimeout(answer, reply.delayMs);
    else answer();
    void request;
  };

  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      const body = Buffer.concat(chunks).toString("utf8");
      let json: unknown;
      try {
        json = JSON.parse(body);
      } catch {
        json = undefined;
      }
      const request: RecordedRequest = {
        method: req.method ?? "",
        url: req.url ?? "",
        headers: req.headers,
        body,
        json,
      };
      requests.push(request);
      send(res, queue.shift() ?? fallback(request), request);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    reply: (...replies) => {
      queue.push(...replies);
    },
    always: (reply) => {
      fallback = typeof reply === "function" ? reply : () => reply;
    },
    reset: () => {
      requests.length = 0;
      queue = [];
      fallback = success;
    },
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** A loopback port nothing listens on (taken from the OS, then released): a Betatel that refuses connections. */
export async function aClosedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}
