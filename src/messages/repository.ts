import type { Database } from "../db/database.ts";
import type { RunSql } from "../db/sql.ts";
import type { Message, MessageEvent } from "../generated/prisma/client.ts";
import { settleBuffered } from "../webhooks/apply.ts";
import type { EventView, MessageSummary, MessageView } from "./schemas.ts";

export interface NewMessage {
  uuid: string;
  to: string;
  textLength: number;
  /**
   * When we asked Betatel: the PENDING event's `occurredAt`. Betatel's own statuses can only be later, even
   * when they reach the webhook before this row is written. Defaults to the row's creation time.
   */
  requestedAt?: Date;
}

/**
 * Stores a message Betatel accepted, with its PENDING event, and applies any statuses that arrived before
 * it (buffered), all in one transaction. Returns the created row; if the uuid is already stored (Betatel
 * answered the same uuid twice), returns the existing row unchanged.
 */
const TRACKING_TRANSACTION = { maxWait: 10_000, timeout: 15_000 };

export async function createMessage(db: Database, message: NewMessage): Promise<MessageSummary> {
  const row = await db.prisma.$transaction(async (tx) => {
    const sql: RunSql = (text, values = []) => tx.$queryRawUnsafe(text, ...values);
    const { requestedAt, ...row } = message;
    const created = await tx.message.createManyAndReturn({ data: [row], skipDuplicates: true });
    const first = created[0];
    if (!first) return tx.message.findUniqueOrThrow({ where: { uuid: message.uuid } });
    // A webhook PENDING may have arrived first and be buffered: it is this very event, so it becomes applied.
    // It occurred when we asked Betatel (a SENT reported before our insert must not sort before it).
    await tx.$executeRawUnsafe(
      `INSERT INTO message_events (uuid, status, outcome, occurred_at, received_at, source)
       VALUES ($1, 'PENDING', 'applied', $2, $3, 'api')
       ON CONFLICT (uuid, status) DO UPDATE SET outcome = 'applied'`,
      message.uuid,
      requestedAt && requestedAt < first.createdAt ? requestedAt : first.createdAt,
      first.createdAt,
    );
    const settled = await settleBuffered(sql, message.uuid);
    return settled.size > 0 ? tx.message.findUniqueOrThrow({ where: { uuid: message.uuid } }) : first;
    // Betatel has already sent this OTP: wait for a pooled connection under load rather than give up after
    // Prisma's default 2 s and leave it untracked.
  }, TRACKING_TRANSACTION);
  return toSummary(row);
}

/**
 * The message with its events, read in one snapshot: two independent reads could see a status whose event
 * is not there yet (a webhook committing between them).
 */
export async function findMessage(db: Database, uuid: string): Promise<MessageView | undefined> {
  const [message, events] = await db.prisma.$transaction(
    [
      db.prisma.message.findUnique({ where: { uuid } }),
      db.prisma.messageEvent.findMany({ where: { uuid }, orderBy: [{ occurredAt: "asc" }, { id: "asc" }] }),
    ],
    { isolationLevel: "RepeatableRead" },
  );
  if (!message) return undefined;
  return { ...toSummary(message), events: events.map(toEventView) };
}

const iso = (date: Date | null) => date?.toISOString() ?? null;

export function toSummary(row: Message): MessageSummary {
  return {
    uuid: row.uuid,
    to: row.to,
    status: row.status,
    createdAt: row.createdAt.toISOString(),
    updatedAt: row.updatedAt.toISOString(),
    sentAt: iso(row.sentAt),
    deliveredAt: iso(row.deliveredAt),
    readAt: iso(row.readAt),
    failedAt: iso(row.failedAt),
    expiredAt: iso(row.expiredAt),
    error: row.errorCode || row.errorMessage ? { code: row.errorCode, message: row.errorMessage } : null,
  };
}

function toEventView(row: MessageEvent): EventView {
  return {
    status: row.status,
    outcome: row.outcome as EventView["outcome"],
    occurredAt: row.occurredAt.toISOString(),
    receivedAt: row.receivedAt.toISOString(),
    source: row.source,
  };
}
