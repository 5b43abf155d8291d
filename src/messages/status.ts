export const STATUSES = ["PENDING", "SENT", "DELIVERED", "READ", "FAILED", "EXPIRED"] as const;
export type Status = (typeof STATUSES)[number];

export const FINAL_STATUSES: ReadonlySet<Status> = new Set(["READ", "FAILED", "EXPIRED"]);

/** The column that records when a message reached each status. */
export const TIMESTAMP_COLUMN: Record<Status, string> = {
  PENDING: "created_at",
  SENT: "sent_at",
  DELIVERED: "delivered_at",
  READ: "read_at",
  FAILED: "failed_at",
  EXPIRED: "expired_at",
};
