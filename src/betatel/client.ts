import { setTimeout as sleep } from "node:timers/promises";
import { z } from "zod";
import { BetatelError } from "./errors.ts";

export interface SendOtpInput {
  /** E.164 digits without `+`. */
  to: string;
  text: string;
}

export interface SendOtpResult {
  uuid: string;
  to: string;
}

/** What the service needs from Betatel. The HTTP adapter and the sandbox both implement it. */
export interface Betatel {
  sendOtp(input: SendOtpInput): Promise<SendOtpResult>;
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
// Only the uuid matters: once Betatel answered 2xx with one, the OTP is on its way, and calling an odd `to`
// a failure would make the caller send a second OTP.
const sendResponseSchema = z.object({ uuid: z.string().min(1).max(255), to: z.unknown().optional() });

/** Connection errors that mean the request was never delivered to Betatel. */
const NOT_DELIVERED = new Set(["ECONNREFUSED", "ENOTFOUND", "EAI_AGAIN", "EHOSTUNREACH", "ENETUNREACH"]);

export function createBetatelClient(options: BetatelHttpOptions): Betatel {
  const doFetch = options.fetch ?? fetch;
  const attempts = options.connectAttempts ?? 3;
  const retryDelayMs = options.retryDelayMs ?? 200;
  const url = new URL("/api/v1/connect-hub/whatsapp/otp", options.baseUrl);

  async function attempt(input: SendOtpInput, signal: AbortSignal) {
    const response = await doFetch(url, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        accept: "application/json",
        "x-api-key": options.apiKey,
        "x-account-id": options.accountId,
      },
      body: JSON.stringify({ to: input.to, text: input.text }),
      signal,
      redirect: "error",
    });
    return { status: response.status, body: await readLimited(response) };
  }

  return {
    async sendOtp(input) {
      // One deadline for every attempt and for reading the answer: a slow or endless body cannot hang us.
      const signal = AbortSignal.timeout(options.timeoutMs);
      for (let tryNumber = 1; ; tryNumber++) {
        try {
          const { status, body } = await attempt(input, signal);
          return interpret(status, body, input.text);
        } catch (error) {
          if (error instanceof BetatelError) throw error;
          if (signal.aborted)
            throw new BetatelError("timeout", `Betatel did not answer within ${options.timeoutMs} ms`);
          const code = connectionErrorCode(error);
          const notDelivered = code !== undefined && NOT_DELIVERED.has(code);
          const unreachable = new BetatelError(
            "unavailable",
            `Betatel could not be reached (${code ?? "network error"})`,
            undefined,
            undefined,
            !notDelivered,
          );
          if (!notDelivered || tryNumber >= attempts) throw unreachable;
          // Still nothing sent: if the deadline passes while waiting, this is "unreachable", not a timeout
          // (a timeout tells the caller the OTP may be out).
          const waited = await sleep(retryDelayMs * tryNumber, true, { signal }).catch(() => false);
          if (!waited) throw unreachable;
        }
      }
    },
  };
}

function connectionErrorCode(error: unknown): string | undefined {
  for (let current = error, depth = 0; current && depth < 5; depth++) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === "string") return code;
    current = (current as { cause?: unknown }).cause;
  }
  return undefined;
}

/** Reads at most MAX_RESPONSE_BYTES of the body; a huge answer is cut, not buffered whole. */
async function readLimited(response: Response): Promise<string> {
  if (!response.body) return "";
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  while (size < MAX_RESPONSE_BYTES) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    size += value.byteLength;
  }
  await reader.cancel().catch(() => {});
  return Buffer.concat(chunks).subarray(0, MAX_RESPONSE_BYTES).toString("utf8");
}

function interpret(status: number, body: string, otpText: string): SendOtpResult {
  const json = parseJson(body);
  if (status >= 200 && status < 300) {
    const parsed = sendResponseSchema.safeParse(json);
    if (!parsed.success) {
      throw new BetatelError("unavailable", "Betatel answered without a message uuid", status);
    }
    const { uuid, to } = parsed.data;
    return { uuid, to: typeof to === "string" || typeof to === "number" ? String(to) : "" };
  }
  const reason = describe(json, body, otpText);
  if (status === 400) throw new BetatelError("rejected", "Betatel rejected the request", status, reason);
  if (status === 401 || status === 403)
    throw new BetatelError("auth_failed", "Betatel refused our credentials", status, reason);
  if (status === 402)
    throw new BetatelError("payment_required", "Betatel account balance is insufficient", status, reason);
  throw new BetatelError("unavailable", `Betatel answered ${status}`, status, reason);
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
