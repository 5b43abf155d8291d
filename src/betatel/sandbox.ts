import type { Logger } from "pino";
import { Webhook } from "standardwebhooks";
import { ulid } from "ulid";
import type { Betatel, DeliveryRecord } from "./client.ts";

/** Delivery records kept for the WDR endpoint; the oldest are forgotten beyond this many. */
const MAX_RECORDS = 10_000;

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
  // The simulated Betatel's own view of each message, as its WDR endpoint would answer it.
  const records = new Map<string, DeliveryRecord>();

  function remember(item: Record<string, unknown>, timestamp: string) {
    const uuid = String(item.uuid);
    const known = records.get(uuid);
    if (!known && records.size >= MAX_RECORDS) records.delete(records.keys().next().value as string);
    const status = String(item.status);
    records.set(uuid, {
      uuid,
      wamId: typeof item.wam_id === "string" ? item.wam_id : (known?.wamId ?? null),
      to: typeof item.to === "string" ? item.to : (known?.to ?? null),
      status,
      timestamp: known?.timestamp ?? timestamp,
      deliveryTimestamp: status === "delivered" ? timestamp : (known?.deliveryTimestamp ?? null),
      deliveryTime: null,
      webhookDelivered: false,
      error: item.error ?? null,
    });
  }

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
      const timestamp = new Date().toISOString();
      remember(item, timestamp);
      await post({ ...item, timestamp });
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
      remember({ uuid, status: "pending", wam_id: wamId, to }, new Date().toISOString());
      const sent = { uuid, status: "sent", wam_id: wamId, to };
      const failed = {
        uuid,
        status: "failed",
        to,
        error: { code: "131026", message: "Message undeliverable (sandbox)" },
      };
      play(fails ? [sent, failed] : [sent, { uuid, status: "delivered", to }, { uuid, status: "read", to }]);
      return { uuid };
    },
    async getDeliveryRecord(uuid) {
      const record = records.get(uuid);
      return record ? { ...record } : null;
    },
    stop() {
      stopped = true;
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
    },
  };
}
