import type { Logger } from "pino";
import { Webhook } from "standardwebhooks";
import { ulid } from "ulid";
import type { Betatel } from "./client.ts";

export interface SandboxOptions {
  /** Where the simulated statuses are posted: this service's own webhook. */
  webhookUrl: () => string;
  webhookSecret: string | undefined;
  signingSecret: string | undefined;
  /** Time between two statuses of one message. */
  stepMs: number;
  /** Share of messages that end FAILED instead of DELIVERED and READ. */
  failureRate: number;
  logger: Logger;
  random?: () => number;
}

export interface SandboxBetatel extends Betatel {
  /** Cancels the statuses not posted yet (on shutdown). */
  stop(): void;
}

/**
 * A simulated Betatel for running without credentials: accepts every OTP with a ULID uuid and then posts
 * SENT, DELIVERED and READ (or SENT then FAILED) to the service's own webhook over HTTP, `stepMs` apart.
 * Nothing is sent to WhatsApp.
 */
export function createSandboxBetatel(options: SandboxOptions): SandboxBetatel {
  const timers = new Set<NodeJS.Timeout>();
  const random = options.random ?? Math.random;
  const signer = options.signingSecret ? new Webhook(options.signingSecret) : undefined;

  async function post(item: Record<string, unknown>) {
    const body = JSON.stringify(item);
    const headers: Record<string, string> = { "content-type": "application/json" };
    if (options.webhookSecret) headers["x-webhook-secret"] = options.webhookSecret;
    if (signer) {
      const id = `msg_${ulid()}`;
      const timestamp = new Date();
      headers["webhook-id"] = id;
      headers["webhook-timestamp"] = String(Math.floor(timestamp.getTime() / 1000));
      headers["webhook-signature"] = signer.sign(id, timestamp, body);
    }
    try {
      const response = await fetch(options.webhookUrl(), {
        method: "POST",
        headers,
        body,
        signal: AbortSignal.timeout(5000),
      });
      if (!response.ok)
        options.logger.warn({ status: response.status, uuid: item.uuid }, "sandbox webhook was refused");
    } catch (error) {
      options.logger.warn({ err: error, uuid: item.uuid }, "sandbox webhook could not be posted");
    }
  }

  let stopped = false;

  /**
   * Posts the statuses one after the other, each `stepMs` after the previous one was answered, so they arrive
   * in order even when the service is slow (fire-and-forget timers let DELIVERED overtake a slow SENT).
   */
  function play(items: Record<string, unknown>[]) {
    const [item, ...rest] = items;
    if (!item || stopped) return;
    const timer = setTimeout(async () => {
      timers.delete(timer);
      await post({ ...item, timestamp: new Date().toISOString() });
      play(rest);
    }, options.stepMs);
    timer.unref();
    timers.add(timer);
  }

  return {
    async sendOtp({ to }) {
      const uuid = ulid();
      const fails = random() < options.failureRate;
      const wamId = `wamid.sandbox.${uuid}`;
      const sent = { uuid, status: "sent", wam_id: wamId, to };
      const failed = {
        uuid,
        status: "failed",
        to,
        error: { code: "131026", message: "Message undeliverable (sandbox)" },
      };
      play(fails ? [sent, failed] : [sent, { uuid, status: "delivered", to }, { uuid, status: "read", to }]);
      return { uuid, to };
    },
    stop() {
      stopped = true;
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
    },
  };
}
