import { connect, type Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { HTTP_SERVER_OPTIONS } from "../src/http/security.ts";
import { type SpawnedServer, spawnServer } from "./support/spawn-server.ts";

// Against the real `server.ts`, because the timeouts are set where the HTTP server is created.
let server: SpawnedServer;
beforeAll(async () => {
  server = await spawnServer({ DATABASE_URL: inject("databaseUrl"), RECONCILE_INTERVAL_MS: "0" });
});
afterAll(async () => {
  server.kill("SIGTERM");
  await server.exited;
});

function open(): Promise<{ socket: Socket; received: () => string; closed: Promise<number> }> {
  const { port } = new URL(server.url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), "127.0.0.1");
    let data = "";
    socket.on("data", (chunk) => {
      data += chunk.toString("latin1");
    });
    const closed = new Promise<number>((done) => socket.on("close", () => done(Date.now())));
    socket.once("error", reject);
    socket.once("connect", () => resolve({ socket, received: () => data, closed }));
  });
}

const headersTimeout = HTTP_SERVER_OPTIONS.headersTimeout ?? 0;

describe("HTTP timeouts", () => {
  it.concurrent("when a client sends its headers a byte at a time and never finishes (slowloris), then the server drops it after headersTimeout", async () => {
    const { socket, received, closed } = await open();
    const started = Date.now();
    socket.write("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ");
    const drip = setInterval(() => socket.writable && socket.write("a"), 500);
    const at = await Promise.race([
      closed,
      new Promise<number>((done) => setTimeout(() => done(-1), headersTimeout + 5_000)),
    ]);
    clearInterval(drip);
    socket.destroy();
    expect(at, "the connection was never closed").toBeGreaterThan(0);
    expect(at - started).toBeGreaterThanOrEqual(headersTimeout - 100);
    expect(at - started).toBeLessThan(headersTimeout + 3_000);
    expect(received()).toMatch(/^HTTP\/1\.1 408/);
    expect(received()).toMatch(/\r\nContent-Type: application\/problem\+json\r\n/i);
  }, 30_000);

  it.concurrent("when a keep-alive connection idles longer than headersTimeout, then its next request is still served", async () => {
    const { socket, received } = await open();
    const ask = () => socket.write("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    ask();
    await new Promise((done) => setTimeout(done, 300));
    expect(received()).toMatch(/^HTTP\/1\.1 200/);
    await new Promise((done) => setTimeout(done, headersTimeout + 2_000));
    expect(socket.destroyed || socket.readyState !== "open", "the idle connection was closed").toBe(false);
    ask();
    await new Promise((done) => setTimeout(done, 300));
    expect(received().match(/HTTP\/1\.1 200/g)).toHaveLength(2);
    socket.destroy();
  }, 30_000);
});

describe("requests Node refuses before the app sees them", () => {
  /** Sends raw bytes and returns everything the server answered before it closed the connection. */
  async function exchange(raw: string): Promise<string> {
    const { socket, received, closed } = await open();
    socket.write(raw);
    await Promise.race([closed, new Promise((done) => setTimeout(done, 5_000))]);
    socket.destroy();
    return received();
  }
  const problemOf = (answer: string) => JSON.parse(answer.slice(answer.indexOf("\r\n\r\n") + 4));

  it.concurrent.each([
    ["headers over Node's limit", `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${"a".repeat(20_000)}\r\n\r\n`, 431],
    ["a request line that is not HTTP", "HELLO THERE\r\n\r\n", 400],
    ["a header with a bad character", "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Bad\u0001: y\r\n\r\n", 400],
    ["no Host header (HTTP/1.1)", "GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n", 400],
    [
      "an Expect it does not meet",
      "POST /v1/messages HTTP/1.1\r\nHost: x\r\nExpect: foo\r\nContent-Length: 2\r\n\r\n{}",
      417,
    ],
    [
      "an Expect it does not meet, pipelined behind another request",
      "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\nExpect: foo\r\n\r\n",
      417,
    ],
    ["the CONNECT method", "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 405],
  ])(
    "when the request has %s, then its 4xx has a problem+json body and the connection closes",
    async (_name, raw, status) => {
      const exchanged = await exchange(raw);
      // The refusal: the last status line, after any earlier answer on the connection.
      const answer = exchanged.slice([...exchanged.matchAll(/HTTP\/1\.1 \d{3} /g)].at(-1)?.index ?? 0);
      expect(answer).toMatch(new RegExp(`^HTTP/1\\.1 ${status} `));
      expect(answer).toMatch(/\r\nContent-Type: application\/problem\+json(; charset=utf-8)?\r\n/i);
      expect(problemOf(answer)).toMatchObject({ status, code: "bad_request", title: expect.any(String) });
    },
  );
});
