import http from "node:http";
import https from "node:https";
import { Webhook } from "standardwebhooks";
import { CallbackTargetRefused, checkCallbackUrl, publicOnlyLookup } from "./target-guard.ts";

/** Any 2xx within this time is a success. */
export const CALLBACK_TIMEOUT_MS = 15_000;
/** How much of a receiver's answer is kept for the team to read. */
const MAX_KEPT_RESPONSE = 1024;

export interface CallbackRequest {
  url: string;
  /** `webhook-id`: the same on every retry of one event. */
  eventId: string;
  body: string;
  signingSecret: string;
  allowPrivate: boolean;
  timeoutMs?: number;
}

export type CallbackResult =
  | { ok: true; statusCode: number; response: string }
  | { ok: false; statusCode?: number; response?: string; error: string; gone?: boolean };

// Connections to receivers are kept open between deliveries (a busy endpoint gets many events a second). A new
// connection still goes through the address check; the setting that disables it is the same for the process.
const agents = {
  "http:": new http.Agent({ keepAlive: true, maxSockets: 64 }),
  "https:": new https.Agent({ keepAlive: true, maxSockets: 64 }),
};

/**
 * POSTs one signed event. Redirects are not followed (a 3xx is a failure): a receiver cannot send the
 * service to another host. Never throws.
 */
export function postEvent(request: CallbackRequest): Promise<CallbackResult> {
  let url: URL;
  try {
    url = checkCallbackUrl(request.url, request.allowPrivate);
  } catch (error) {
    return Promise.resolve({ ok: false, error: `refused: ${(error as Error).message}` });
  }
  // The attempt's own time: receivers refuse a webhook-timestamp far from their clock.
  const timestamp = new Date();
  const signature = new Webhook(request.signingSecret).sign(request.eventId, timestamp, request.body);
  const transport = url.protocol === "https:" ? https : http;
  return new Promise((resolve) => {
    const req = transport.request(url, {
      method: "POST",
      agent: agents[url.protocol as keyof typeof agents],
      headers: {
        "content-type": "application/json",
        "content-length": Buffer.byteLength(request.body),
        "user-agent": "whatsapp-otp-tracker-callbacks",
        "webhook-id": request.eventId,
        "webhook-timestamp": String(Math.floor(timestamp.getTime() / 1000)),
        "webhook-signature": signature,
      },
      lookup: request.allowPrivate ? undefined : publicOnlyLookup,
      signal: AbortSignal.timeout(request.timeoutMs ?? CALLBACK_TIMEOUT_MS),
    });
    req.on("response", (res) => {
      const chunks: Buffer[] = [];
      let kept = 0;
      const finish = () => {
        const response = Buffer.concat(chunks).toString("utf8");
        const statusCode = res.statusCode ?? 0;
        if (statusCode >= 200 && statusCode < 300) return resolve({ ok: true, statusCode, response });
        resolve({ ok: false, statusCode, response, error: `HTTP ${statusCode}`, gone: statusCode === 410 });
      };
      res.on("data", (chunk: Buffer) => {
        if (kept < MAX_KEPT_RESPONSE) chunks.push(chunk.subarray(0, MAX_KEPT_RESPONSE - kept));
        kept += chunk.length;
        // The rest is not read: a receiver answering megabytes costs us nothing more.
        if (kept >= MAX_KEPT_RESPONSE) {
          res.destroy();
          finish();
        }
      });
      res.on("end", finish);
      res.on("error", finish);
    });
    req.on("error", (error) => {
      const reason =
        error.name === "TimeoutError" || error.name === "AbortError"
          ? "timeout"
          : error instanceof CallbackTargetRefused
            ? `refused: ${error.message}`
            : error.message || error.name;
      resolve({ ok: false, error: reason });
    });
    req.end(request.body);
  });
}
