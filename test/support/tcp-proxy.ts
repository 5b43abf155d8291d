import { createServer, type Server, Socket } from "node:net";

export interface TcpProxy {
  /** The port the app connects to instead of the target's. */
  port: number;
  /** Rewrites a postgres URL to go through the proxy. */
  via(url: string): string;
  /** "The database is down": destroys every live connection and refuses new ones. */
  stop(): Promise<void>;
  /** "The database is back": accepts connections again on the same port. */
  start(): Promise<void>;
  /**
   * "A NAT dropped the flows": the connections open now stay open but carry nothing more, in either direction,
   * and nothing tells either end. New connections work.
   */
  blackhole(): void;
  close(): Promise<void>;
}

/**
 * A test-owned TCP proxy in front of PostgreSQL. Stopping it is a real outage from the app's point of view
 * (sockets reset, connections refused) without stopping the shared server other tests use.
 */
export async function startTcpProxy(targetPort = 5432, targetHost = "127.0.0.1"): Promise<TcpProxy> {
  const sockets = new Set<Socket>();
  const pairs = new Set<[Socket, Socket]>();
  let server: Server | undefined;
  let port = 0;

  const listen = () =>
    new Promise<void>((resolve, reject) => {
      const next = createServer((client) => {
        const upstream = new Socket();
        sockets.add(client).add(upstream);
        const pair: [Socket, Socket] = [client, upstream];
        pairs.add(pair);
        const drop = () => {
          client.destroy();
          upstream.destroy();
          sockets.delete(client);
          sockets.delete(upstream);
          pairs.delete(pair);
        };
        client.on("error", drop).on("close", drop);
        upstream.on("error", drop).on("close", drop);
        upstream.connect(targetPort, targetHost, () => {
          client.pipe(upstream).pipe(client);
        });
      });
      next.once("error", reject);
      next.listen(port, "127.0.0.1", () => {
        port = (next.address() as { port: number }).port;
        server = next;
        resolve();
      });
    });

  const stop = () =>
    new Promise<void>((resolve) => {
      const current = server;
      server = undefined;
      for (const socket of sockets) socket.destroy();
      sockets.clear();
      if (!current) return resolve();
      current.close(() => resolve());
    });

  await listen();
  return {
    get port() {
      return port;
    },
    via(url) {
      const parsed = new URL(url);
      parsed.host = `127.0.0.1:${port}`;
      return parsed.toString();
    },
    stop,
    start: listen,
    blackhole() {
      for (const [client, upstream] of pairs) {
        client.unpipe(upstream);
        upstream.unpipe(client);
        client.pause();
        upstream.pause();
      }
      pairs.clear();
    },
    close: stop,
  };
}
