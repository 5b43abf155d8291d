import { setTimeout as sleep } from "node:timers/promises";
import { z } from "zod";
import { type DeliveryRecord, parseDeliveryRecord } from "./delivery-record.ts";
import { BetatelError } from "./errors.ts";

export type { DeliveryRecord } from "./delivery-record.ts";

export interface SendOtpInput {
  /** E.164 digits without `+`. */
  to: string;
  text: string;
}

export interface SendOtpResult {
  uuid: string;
}

/** What the service needs from Betatel. The HTTP adapter and the sandbox both implement it. */
export interface Betatel {
  sendOtp(input: SendOtpInput): Promise<SendOtpResult>;
  /** Betatel's delivery record (WDR) of one message, without the OTP text; null when Betatel does not know it. */
  getDeliveryRecord(uuid: string): Promise<DeliveryRecord | null>;
}

export interface BetatelHttpOptions {
  baseUrl: string;
  apiKey: string;
  accountId: string;
  timeoutMs: number;
  fetch?: typeof fetch;
  /** Attempts when the connection is refused (the request never left, so no OTP can be sent twice). */
  connectAttempts?: number;
  retryDelayMs?: number;
}

const MAX_RESPONSE_BYTES = 64 * 1024;
// The uuid must be one our own API can store and serve back (`GET /v1/messages/:uuid` accepts only these).
// Anything else in a 2xx is ignored: once Betatel answered with a uuid, the OTP is on its way, and calling
// an odd `to` a failure would make the caller send a second OTP.
const sendResponseSchema = z.object({
  uuid: z.string().regex(/^[A-Za-z0-9._:-]{1,255}$/),
  to: z.unknown().optional(),
});

/** Connection errors that mean the request was never delivered to Betatel. */
const NOT_DELIVERED = new Set(["ECONNREFUSED", "ENOTFOUND", "EAI_AGAIN", "EHOSTUNREACH", "ENETUNREACH"]);

export function createBetatelClient(options: BetatelHttpOptions): Betatel {
  const doFetch = options.fetch ?? fetch;
  const attempts = options.connectAttempts ?? 3;
  const retryDelayMs = options.retryDelayMs ?? 200;
  const url = new URL("/api/v1/connect-hub/whatsapp/otp", options.baseUrl);

  const headers = (extra: Record<string, string> = {}) => ({
    accept: "application/json",
    "x-api-key": options.apiKey,
    "x-account-id": options.accountId,
    ...extra,
  });

  /**
   * One call to Betatel under one deadline (every attempt and reading the answer: a slow or endless body
   * cannot hang us), retried only when the connection was refused (the request never left).
   */
  async function call(target: URL, init: { method: string; body?: string; headers: Record<string, string> }) {
    const signal = AbortSignal.timeout(options.timeoutMs);
    for (let tryNumber = 1; ; tryNumber++) {
      try {
        const response = await doFetch(target, { ...init, signal, redirect: "error" });
        return { status: response.status, headers: response.headers, body: await readLimited(response, signal) };
      } catch (error) {
        if (signal.aborted) throw new BetatelError("timeout", `Betatel did not answer within ${options.timeoutMs} ms`);
        const code = connectionErrorCode(error);
        const notDelivered = code !== undefined && NOT_DELIVERED.has(code);
        const unreachable = new BetatelError(
          "unavailable",
          `Betatel could not be reached (${code ?? "network error"})`,
          {
            mayHaveSent: !notDelivered,
          },
        );
        if (!notDelivered || tryNumber >= attempts) throw unreachable;
        // Still nothing sent: if the deadline passes while waiting, this is "unreachable", not a timeout
        // (a timeout tells the caller the OTP may be out).
        const waited = await sleep(retryDelayMs * tryNumber, true, { signal }).catch(() => false);
        if (!waited) throw unreachable;
      }
    }
  }

  return {
    async sendOtp(input) {
      const { status, body } = await call(url, {
        method: "POST",
        headers: headers({ "content-type": "application/json" }),
        body: JSON.stringify({ to: input.to, text: input.text }),
      });
      return interpret(status, body, input.text);
    },

    async getDeliveryRecord(uuid) {
      const target = new URL(`/api/v1/connect-hub/whatsapp/${encodeURIComponent(uuid)}/wdr`, options.baseUrl);
      const answer = await call(target, { method: "GET", headers: headers() });
      if (answer.status === 404) return null;
      if (answer.status >= 200 && answer.status < 300) {
        const record = parseDeliveryRecord(parseJson(answer.body));
        if (!record)
          throw new BetatelError("unavailable", "Betatel answered an unreadable delivery record", {
            status: answer.status,
          });
        return record;
      }
      // The WDR carries the OTP text: never keep Betatel's words about it.
      const retryAfterMs = parseRetryAfter(answer.headers.get("retry-after"));
      if (answer.status === 401 || answer.status === 403)
        throw new BetatelError("auth_failed", "Betatel refused our credentials", { status: answer.status });
      if (answer.status === 400)
        throw new BetatelError("rejected", "Betatel rejected the request", { status: answer.status });
      throw new BetatelError("unavailable", `Betatel answered ${answer.status}`, {
        status: answer.status,
        retryAfterMs,
      });
    },
  };
}

/** `Retry-After` as milliseconds: delta-seconds or an HTTP date; undefined when absent or unreadable. */
export function parseRetryAfter(value: string | null, now = Date.now()): number | undefined {
  if (!value) return undefined;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000;
  const date = Date.parse(trimmed);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

function connectionErrorCode(error: unknown): string | undefined {
  for (let current = error, depth = 0; current && depth < 5; depth++) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === "string") return code;
    current = (current as { cause?: unknown }).cause;
  }
  return undefined;
}

/**
 * Reads at most MAX_RESPONSE_BYTES of the body; a huge answer is cut, not buffered whole. The deadline ends the
 * read itself: fetch should error a body it handed over when its signal aborts, but a trickling body once kept
 * a send waiting well past the deadline, so the reader is cancelled here too (a pending read then ends at once).
 */
async function readLimited(response: Response, signal: AbortSignal): Promise<string> {
  if (!response.body) return "";
  const reader = response.body.getReader();
  const stop = () => void reader.cancel(signal.reason).catch(() => {});
  signal.addEventListener("abort", stop, { once: true });
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    while (size < MAX_RESPONSE_BYTES) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      size += value.byteLength;
    }
    signal.throwIfAborted();
  } finally {
    signal.removeEventListener("abort", stop);
    await reader.cancel().catch(() => {});
  }
  return Buffer.concat(chunks).subarray(0, MAX_RESPONSE_BYTES).toString("utf8");
}

function interpret(status: number, body: string, otpText: string): SendOtpResult {
  const json = parseJson(body);
  if (status >= 200 && status < 300) {
    const parsed = sendResponseSchema.safeParse(json);
    if (!parsed.success) {
      throw new BetatelError("unavailable", "Betatel answered without a usable message uuid", { status });
    }
    return { uuid: parsed.data.uuid };
  }
  const reason = describe(json, body, otpText);
  if (status === 400) throw new BetatelError("rejected", "Betatel rejected the request", { status, reason });
  if (status === 401 || status === 403)
    throw new BetatelError("auth_failed", "Betatel refused our credentials", { status, reason });
  if (status === 402)
    throw new BetatelError("payment_required", "Betatel account balance is insufficient", { status, reason });
  throw new BetatelError("unavailable", `Betatel answered ${status}`, { status, reason });
}

function parseJson(body: string): unknown {
  try {
    return JSON.parse(body);
  } catch {
    return undefined;
  }
}

/** Betatel's reason as one short line, with the OTP text removed in case Betatel echoed it. */
function describe(json: unknown, body: string, otpText: string): string | undefined {
  const fields = json && typeof json === "object" ? (json as Record<string, unknown>) : {};
  const candidates = [fields.message, fields.error, fields.detail, json === undefined ? body : undefined];
  const text = candidates.find((value): value is string => typeof value === "string" && value.trim() !== "");
  if (!text) return undefined;
  const oneLine = text
    .split(otpText)
    .join("[redacted]")
    .replace(/\p{Cc}+/gu, " ")
    .trim();
  return oneLine.slice(0, 300) || undefined;
}
