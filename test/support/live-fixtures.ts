import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import type { Server } from "node:http";
import { type AddressInfo, connect, type Socket } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import type { Express } from "express";

/** An HTTP listener for an app, for clients that need a real socket (streams, aborts). */
export async function listen(app: Express): Promise<{ url: string; server: Server; close(): Promise<void> }> {
  const server = app.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    server,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** A Server-Sent Events client that keeps every event (parsed `data`) and comment it received. */
export interface EventStream {
  status: number;
  contentType: string | null;
  events: unknown[];
  comments: string[];
  /** Resolves with the event number `index` (0-based) once it arrives. */
  event(index: number, timeoutMs?: number): Promise<unknown>;
  close(): void;
}

export async function openEventStream(url: string, headers: Record<string, string> = {}): Promise<EventStream> {
  const abort = new AbortController();
  const response = await fetch(url, { signal: abort.signal, headers: { accept: "text/event-stream", ...headers } });
  const events: unknown[] = [];
  const comments: string[] = [];
  if (response.ok && response.body) {
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    void (async () => {
      let buffer = "";
      try {
        for (;;) {
          const { done, value } = await reader.read();
          if (done) return;
          buffer += value;
          let end = buffer.indexOf("\n\n");
          while (end >= 0) {
            const block = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            for (const line of block.split("\n")) {
              if (line.startsWith("data: ")) events.push(JSON.parse(line.slice(6)));
              else if (line.startsWith(":")) comments.push(line.slice(1).trim());
            }
            end = buffer.indexOf("\n\n");
          }
        }
      } catch {
        // aborted by close()
      }
    })();
  }
  return {
    status: response.status,
    contentType: response.headers.get("content-type"),
    events,
    comments,
    async event(index, timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      while (events.length <= index) {
        if (Date.now() > deadline) throw new Error(`no event #${index} within ${timeoutMs} ms (got ${events.length})`);
        await sleep(10);
      }
      return events[index];
    },
    close: () => abort.abort(),
  };
}

/** Polls `check` until it is true (or fails after `timeoutMs`). */
export async function eventually(check: () => boolean | Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await sleep(20);
  }
}

/** The service as its own process (`tsx src/server.ts`), e.g. a second instance on the same database. */
export async function startServiceProcess(
  env: Record<string, string>,
): Promise<{ url: string; stop(): Promise<void> }> {
  const child: ChildProcess = spawn(process.execPath, ["node_modules/tsx/dist/cli.mjs", "src/server.ts"], {
    // The run's database is shared: no reconciler claims, and no sweep expires, other files' old rows.
    env: {
      PATH: process.env.PATH ?? "",
      NODE_ENV: "test",
      PORT: "0",
      LOG_LEVEL: "info",
      RECONCILE_INTERVAL_MS: "0",
      SWEEP_INTERVAL_MS: "0",
      ...env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`service did not start:\n${output}`)), 30_000);
    child.stdout?.on("data", (chunk: Buffer) => {
      output += chunk.toString("utf8");
      const match = /"port":(\d+),"msg":"listening"/.exec(output);
      if (match) {
        clearTimeout(timer);
        resolve(Number(match[1]));
      }
    });
    child.stderr?.on("data", (chunk: Buffer) => {
      output += chunk.toString("utf8");
    });
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`service exited with ${code}:\n${output}`));
    });
  });
  return {
    url: `http://127.0.0.1:${port}`,
    async stop() {
      if (child.exitCode !== null) return;
      const exited = once(child, "exit");
      child.kill("SIGTERM");
      await exited;
    },
  };
}

/**
 * One HTTP request on its own raw socket, for tests that hold thousands of streams or long-polls open (a fetch per
 * stream costs the test process far more). `received()` is everything the server sent so far.
 */
export interface RawRequest {
  socket: Socket;
  received(): string;
  /** The response's status code, once its status line arrived. */
  status(timeoutMs?: number): Promise<number>;
  /** How many SSE `data:` events arrived. */
  events(): number;
  close(): void;
}

export function rawRequest(url: string, path: string, headers: Record<string, string> = {}): RawRequest {
  const { hostname, port } = new URL(url);
  const socket = connect(Number(port), hostname);
  let text = "";
  socket.setEncoding("utf8");
  socket.on("data", (chunk: string) => {
    text += chunk;
  });
  socket.on("error", () => {});
  const head = Object.entries({ host: `${hostname}:${port}`, ...headers })
    .map(([name, value]) => `${name}: ${value}\r\n`)
    .join("");
  socket.write(`GET ${path} HTTP/1.1\r\n${head}\r\n`);
  return {
    socket,
    received: () => text,
    async status(timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const match = /^HTTP\/1\.1 (\d{3})/.exec(text);
        if (match) return Number(match[1]);
        if (Date.now() > deadline) throw new Error(`no status line within ${timeoutMs} ms`);
        await sleep(10);
      }
    },
    events: () => text.split("\ndata: ").length - 1,
    close: () => socket.destroy(),
  };
}

/** Opens `count` raw requests, `batch` at a time, each answered with its status line before the next batch. */
export async function openRawRequests(
  count: number,
  open: (index: number) => RawRequest,
  batch = 100,
): Promise<{ requests: RawRequest[]; statuses: number[] }> {
  const requests: RawRequest[] = [];
  const statuses: number[] = [];
  for (let start = 0; start < count; start += batch) {
    const opened = Array.from({ length: Math.min(batch, count - start) }, (_, k) => open(start + k));
    requests.push(...opened);
    statuses.push(...(await Promise.all(opened.map((request) => request.status()))));
  }
  return { requests, statuses };
}
