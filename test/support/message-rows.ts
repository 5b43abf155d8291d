import type pg from "pg";
import type { Status } from "../../src/tracking/status.ts";
import { aPhoneNumber, aUuid } from "./test-app.ts";

export interface MessageRow {
  uuid: string;
  to: string;
  status: Status;
  createdAt: Date;
  sentAt: Date | null;
  deliveredAt: Date | null;
  readAt: Date | null;
  failedAt: Date | null;
  errorCode: string | null;
  errorMessage: string | null;
}

/**
 * Writes a message row as the service would have left it, with chosen timestamps (the API always stamps
 * "now", and these tests need known times). Returns the row written.
 */
export async function insertMessage(pool: pg.Pool, overrides: Partial<MessageRow> = {}): Promise<MessageRow> {
  const row: MessageRow = {
    uuid: aUuid(),
    to: aPhoneNumber(),
    status: "PENDING",
    createdAt: new Date(),
    sentAt: null,
    deliveredAt: null,
    readAt: null,
    failedAt: null,
    errorCode: null,
    errorMessage: null,
    ...overrides,
  };
  await pool.query(
    `INSERT INTO messages (uuid, "to", status, text_length, created_at, updated_at, sent_at, delivered_at, read_at,
       failed_at, error_code, error_message)
     VALUES ($1, $2, $3, 6, $4, $4, $5, $6, $7, $8, $9, $10)`,
    [
      row.uuid,
      row.to,
      row.status,
      row.createdAt,
      row.sentAt,
      row.deliveredAt,
      row.readAt,
      row.failedAt,
      row.errorCode,
      row.errorMessage,
    ],
  );
  return row;
}

/** A one-hour window nobody else writes in: a random hour in 2001-2010. */
export function aQuietHour(): Date {
  const hours = Math.floor(Math.random() * 24 * 365 * 9);
  return new Date(Date.UTC(2001, 0, 1) + hours * 3_600_000);
}

export const plus = (date: Date, ms: number) => new Date(date.getTime() + ms);
