import { type IncomingMessage, type Server, type ServerOptions, type ServerResponse, STATUS_CODES } from "node:http";
import type { Duplex } from "node:stream";
import type { RequestHandler } from "express";
import helmet from "helmet";
import { AppError, problemBody } from "./problem.ts";

/**
 * Security headers for a JSON API (helmet's defaults: nosniff, frame denial, HSTS, a restrictive CSP,
 * no referrer leaks, cross-origin isolation headers).
 */
export const securityHeaders = (): RequestHandler => helmet();

/**
 * Bounded waits for slow or stalled clients (slowloris): headers within 10 s, the whole request within 30 s,
 * checked every second (Node's default check interval is 30 s). Keep-alive a little above common load
 * balancer idle timeouts so the balancer, not us, closes idle connections.
 */
export const HTTP_SERVER_OPTIONS: ServerOptions = {
  headersTimeout: 10_000,
  requestTimeout: 30_000,
  keepAliveTimeout: 65_000,
  connectionsCheckingInterval: 1_000,
  // Checked by `requireHostHeader` instead, which answers problem+json.
  requireHostHeader: false,
};

const CLIENT_ERRORS: Record<string, { status: number; detail: string }> = {
  HPE_HEADER_OVERFLOW: { status: 431, detail: "The request headers are too large." },
  ERR_HTTP_REQUEST_TIMEOUT: { status: 408, detail: "The request did not arrive in time." },
};

/** A `bad_request` problem with its own status, as the raw bytes of a response that closes the connection. */
function rawProblem(status: number, detail: string): string {
  const title = STATUS_CODES[status] ?? "Bad Request";
  const body = JSON.stringify(problemBody(new AppError({ code: "bad_request", status, title, detail })));
  return `HTTP/1.1 ${status} ${title}\r\nContent-Type: application/problem+json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`;
}

/**
 * Requests Node refuses before the app sees them (headers too large, too slow, unreadable, an `Expect` it does
 * not meet, a CONNECT) are answered as problem+json like every other refusal, not with Node's bare status line
 * or a closed socket.
 */
export function answerClientErrorsAsProblems(server: Server): void {
  server.on("clientError", (error: NodeJS.ErrnoException, socket: Duplex) => {
    // Nothing can be answered on a closed socket, or after a response has begun on it.
    const responding = (socket as { _httpMessage?: { headersSent?: boolean } })._httpMessage?.headersSent;
    if (error.code === "ECONNRESET" || !socket.writable || responding) {
      socket.destroy();
      return;
    }
    const { status, detail } = CLIENT_ERRORS[error.code ?? ""] ?? {
      status: 400,
      detail: "The request could not be read.",
    };
    socket.end(rawProblem(status, detail));
  });
  server.on("checkExpectation", (_req: IncomingMessage, res: ServerResponse) => {
    // Through the response, not its socket: a request pipelined behind another has no socket of its own yet.
    const detail = "Only Expect: 100-continue is understood.";
    const body = JSON.stringify(
      problemBody(new AppError({ code: "bad_request", status: 417, title: STATUS_CODES[417], detail })),
    );
    res
      .writeHead(417, {
        "Content-Type": "application/problem+json",
        "Content-Length": Buffer.byteLength(body),
        Connection: "close",
      })
      .end(body);
  });
  server.on("connect", (_req: IncomingMessage, socket: Duplex) => {
    socket.end(rawProblem(405, "CONNECT is not served here."));
  });
}

/** HTTP/1.1 requires a Host header (Node's own check answers a bare 400, so it is made here instead). */
export const requireHostHeader: RequestHandler = (req, _res, next) => {
  if (req.headers.host === undefined && req.httpVersion === "1.1") {
    return next(new AppError({ code: "bad_request", detail: "An HTTP/1.1 request needs a Host header." }));
  }
  next();
};
