import { z } from "zod";
import type { Status } from "../tracking/status.ts";

/**
 * Betatel's delivery record (WDR) of one message, as the service keeps it: the record's `text` field is the
 * OTP, so it is dropped here, at the edge, and never reaches storage or logs.
 */
export interface DeliveryRecord {
  uuid: string;
  wamId: string | null;
  to: string | null;
  /** Betatel's status word as given (its vocabulary is not documented). */
  status: string | null;
  timestamp: string | number | null;
  deliveryTimestamp: string | number | null;
  deliveryTime: string | number | null;
  webhookDelivered: boolean | string | null;
  /** A failure reason, when the record carries one (undocumented: `error` as the webhook gives it). */
  error: unknown;
}

const text = z.string().max(255);
const time = z.union([z.string().max(64), z.number()]).nullish();
const recordSchema = z.object({
  uuid: text,
  wam_id: text.nullish(),
  to: z.union([text, z.number()]).nullish(),
  status: text.nullish(),
  timestamp: time,
  delivery_timestamp: time,
  delivery_time: time,
  webhook_delivered: z.union([z.boolean(), text]).nullish(),
  error: z.unknown().optional(),
});

/** Reads a WDR answer (the record itself, or wrapped in `data`); undefined when it is not one. */
export function parseDeliveryRecord(json: unknown): DeliveryRecord | undefined {
  const candidate =
    json && typeof json === "object" && "data" in json && !("uuid" in json) ? (json as { data: unknown }).data : json;
  const parsed = recordSchema.safeParse(candidate);
  if (!parsed.success) return undefined;
  const r = parsed.data;
  return {
    uuid: r.uuid,
    wamId: r.wam_id ?? null,
    to: r.to === undefined || r.to === null ? null : String(r.to),
    status: r.status ?? null,
    timestamp: r.timestamp ?? null,
    deliveryTimestamp: r.delivery_timestamp ?? null,
    deliveryTime: r.delivery_time ?? null,
    webhookDelivered: r.webhook_delivered ?? null,
    error: r.error ?? null,
  };
}

// Betatel does not document its WDR status words: these are WhatsApp's and common provider spellings.
const STATUS_WORDS: Record<string, Status> = {
  pending: "PENDING",
  queued: "PENDING",
  accepted: "PENDING",
  submitted: "PENDING",
  sent: "SENT",
  delivered: "DELIVERED",
  read: "READ",
  seen: "READ",
  failed: "FAILED",
  undelivered: "FAILED",
  undeliverable: "FAILED",
  rejected: "FAILED",
  error: "FAILED",
  expired: "EXPIRED",
};

/** Our status for Betatel's word, case-insensitively; undefined for a word we do not know (ignored). */
export function toStatus(word: string | null): Status | undefined {
  if (!word) return undefined;
  return STATUS_WORDS[word.trim().toLowerCase()];
}
