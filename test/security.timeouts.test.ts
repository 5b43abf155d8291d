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
