import type { Express } from "express";
import request from "supertest";
import { decide } from "../../src/tracking/state-machine.ts";
import type { Status } from "../../src/tracking/status.ts";
import { aPhoneNumber } from "./test-app.ts";

export const WEBHOOK = "/webhooks/betatel";

/** POSTs a webhook body as JSON (a string is sent as is). */
export function postWebhook(app: Express, body: unknown, headers: Record<string, string> = {}) {
  return request(app)
    .post(WEBHOOK)
    .set({ "content-type": "application/json", ...headers })
    .send(typeof body === "string" ? body : JSON.stringify(body));
}

/** Creates a message through the front door (the fake Betatel picks its uuid) and returns its uuid. */
export async function aSentMessage(app: Express): Promise<string> {
  const res = await request(app).post("/v1/messages").send({ to: aPhoneNumber(), text: "Your code is 482910" });
  if (res.status !== 201) throw new Error(`POST /v1/messages answered ${res.status}: ${JSON.stringify(res.body)}`);
  return res.body.uuid as string;
}

export async function readMessage(app: Express, uuid: string) {
  const res = await request(app).get(`/v1/messages/${uuid}`);
  if (res.status !== 200) throw new Error(`GET /v1/messages/${uuid} answered ${res.status}`);
  return res.body;
}

export const TIMESTAMP_FIELD: Record<Status, string> = {
  PENDING: "createdAt",
  SENT: "sentAt",
  DELIVERED: "deliveredAt",
  READ: "readAt",
  FAILED: "failedAt",
  EXPIRED: "expiredAt",
};

const RANK: Record<Status, number> = { PENDING: 0, SENT: 1, DELIVERED: 2, READ: 3, FAILED: 4, EXPIRED: 4 };

export interface HistoryEvent {
  status: Status;
  /** Whole seconds, so every timestamp format carries it exactly. */
  at: Date;
}

export interface FoldedMessage {
  status: Status;
  timestamps: Partial<Record<Status, string>>;
}

/**
 * The reference model: one-by-one processing of a message's webhook events with the pure `decide`,
 * dedup on status first (the message starts PENDING with its PENDING event stored).
 */
export function foldEvents(events: readonly HistoryEvent[]): FoldedMessage {
  const seen = new Set<Status>(["PENDING"]);
  let status: Status = "PENDING";
  const timestamps: Partial<Record<Status, string>> = {};
  for (const event of events) {
    if (seen.has(event.status)) continue;
    seen.add(event.status);
    const decision = decide(status, event.status);
    if (decision === "applied") status = event.status;
    if (decision === "applied" || decision === "stale") timestamps[event.status] ??= event.at.toISOString();
  }
  return { status, timestamps };
}

export const byRank = (events: readonly HistoryEvent[]) => [...events].sort((a, b) => RANK[a.status] - RANK[b.status]);

/** What GET shows for the status timestamps of a folded message. */
export function expectedView(folded: FoldedMessage): Record<string, unknown> {
  const view: Record<string, unknown> = { status: folded.status };
  for (const status of ["SENT", "DELIVERED", "READ", "FAILED", "EXPIRED"] as const) {
    view[TIMESTAMP_FIELD[status]] = folded.timestamps[status] ?? null;
  }
  return view;
}

/** Real histories of one message (never DELIVERED and FAILED together: that mix is order-dependent). */
export const HISTORIES: readonly (readonly Status[])[] = [
  ["SENT"],
  ["SENT", "DELIVERED"],
  ["SENT", "DELIVERED", "READ"],
  ["FAILED"],
  ["SENT", "FAILED"],
  ["EXPIRED"],
  ["SENT", "EXPIRED"],
];

/** Timestamps for a history: rank order, one minute apart, whole seconds, ending some minutes ago. */
export function timestampsFor(statuses: readonly Status[], startSecondsAgo: number): HistoryEvent[] {
  const start = Math.floor(Date.now() / 1000) - startSecondsAgo;
  return statuses.map((status, i) => ({ status, at: new Date((start + 60 * i) * 1000) }));
}
