import type { Status } from "../src/tracking/status.ts";

/** The status updates Betatel would send for one message, in the order they happened. */
export interface History {
  n: number;
  uuid: string;
  statuses: Array<{ status: Status; timestamp: string }>;
}

/** One status update on the wire: which message, which step of its history, and the JSON item. */
export interface Delivery {
  n: number;
  status: Status;
  item: Record<string, unknown>;
}

export const benchUuid = (n: number) => `bench-${n}`;

/** Small seeded PRNG (mulberry32) so a run's workload is reproducible from its seed. */
export function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Real histories: SENT, DELIVERED, READ for about 90% of messages; SENT, FAILED for the rest. */
export function histories(first: number, count: number, createdAt: Date, rand: () => number): History[] {
  const at = (seconds: number) => new Date(createdAt.getTime() + seconds * 1000).toISOString();
  return Array.from({ length: count }, (_, k) => {
    const n = first + k;
    const failed = rand() < 0.1;
    const statuses: History["statuses"] = failed
      ? [
          { status: "SENT", timestamp: at(1) },
          { status: "FAILED", timestamp: at(3) },
        ]
      : [
          { status: "SENT", timestamp: at(1) },
          { status: "DELIVERED", timestamp: at(2) },
          { status: "READ", timestamp: at(5) },
        ];
    return { n, uuid: benchUuid(n), statuses };
  });
}

export function wireItem(history: History, step: number): Record<string, unknown> {
  const { status, timestamp } = history.statuses[step] as History["statuses"][number];
  const item: Record<string, unknown> = {
    uuid: history.uuid,
    status,
    timestamp,
    wam_id: `wamid.HBgLMzg3NjE0NDQ1NTUVAgARGBI${history.n}`,
    to: "38761444555",
  };
  if (status === "FAILED") item.error = { code: "131026", message: "Message undeliverable" };
  return item;
}

/**
 * The arrival order of all the histories' statuses: each message's statuses arrive near its place in the
 * stream, mostly in order, but jittered by up to `window` positions (so some arrive out of order), and about
 * `duplicateRate` of them arrive a second time a little later (a sender retrying after a lost answer).
 */
export function arrivals(all: History[], rand: () => number, window = 64, duplicateRate = 0.1): Delivery[] {
  const keyed: Array<{ key: number; delivery: Delivery }> = [];
  all.forEach((history, position) => {
    history.statuses.forEach((entry, step) => {
      const delivery = { n: history.n, status: entry.status, item: wireItem(history, step) };
      const key = position + step * (window / 4) + rand() * window;
      keyed.push({ key, delivery });
      if (rand() < duplicateRate) keyed.push({ key: key + rand() * window * 2, delivery });
    });
  });
  return keyed.sort((a, b) => a.key - b.key).map((entry) => entry.delivery);
}

/**
 * A provider's retry storm: `count` random (message, status) pairs over the first `span` messages, statuses they
 * already have (after the single-status phase), so nearly every one is a duplicate.
 */
export function retryStorm(all: History[], count: number, span: number, rand: () => number): Delivery[] {
  const pool = all.slice(0, span);
  return Array.from({ length: count }, () => {
    const history = pool[Math.floor(rand() * pool.length)] as History;
    const step = Math.floor(rand() * history.statuses.length);
    return { n: history.n, status: history.statuses[step]?.status as Status, item: wireItem(history, step) };
  });
}

/** How many deliveries arrived before an earlier status of the same message (out of order). */
export function countOutOfOrder(deliveries: Delivery[]): number {
  const rank: Record<Status, number> = { PENDING: 0, SENT: 1, DELIVERED: 2, READ: 3, FAILED: 2, EXPIRED: 4 };
  const highest = new Map<number, number>();
  let count = 0;
  for (const delivery of deliveries) {
    const seen = highest.get(delivery.n) ?? 0;
    if (rank[delivery.status] < seen) count++;
    highest.set(delivery.n, Math.max(seen, rank[delivery.status]));
  }
  return count;
}
