export const STATUSES = ["PENDING", "SENT", "DELIVERED", "READ", "FAILED", "EXPIRED"] as const;
export type Status = (typeof STATUSES)[number];

export const FINAL_STATUSES: ReadonlySet<Status> = new Set(["READ", "FAILED", "EXPIRED"]);

/** Position on the delivery path (PENDING, SENT, DELIVERED, READ); FAILED and EXPIRED are off it. */
export const RANK: Partial<Record<Status, number>> = { PENDING: 0, SENT: 1, DELIVERED: 2, READ: 3 };
