import type { Database } from "../db/database.ts";
import { inTransaction } from "../db/sql.ts";
import type { Message, MessageEvent } from "../generated/prisma/client.ts";
import { lockMessageUuid, recordPendingEvent, settleBuffered } from "../tracking/apply.ts";
import type { EventView, MessageSummary, MessageView } from "./schemas.ts";

export interface NewMessage {
  uuid: string;
  to: string;
  /** The OTP's length; null when not known (a message adopted from Betatel's delivery record). */
  textLength: number | null;
  /** Who recorded it: `api` (we sent it) or `reconcile` (adopted from Betatel's delivery record). */
  source?: "api" | "reconcile";
  /** The row's creation time; defaults to now. An adopted message is dated when Betatel sent it. */
  createdAt?: Date;
  /** The team whose key sent it. */
  team: string;
  reference?: string | undefined;
  metadata?: Record<string, string | number | boolean> | undefined;
  verificationId?: string;
  /**
   * When we asked Betatel: the PENDING event's `occurredAt`. Betatel's own statuses can only be later, even
   * when they reach the webhook before this row is written. Defaults to the row's creation time.
   */
  requestedAt?: Date;
}

/**
 * Betatel answered a send with a uuid that another message already has (another team's, another number's, or
 * an earlier send's): that row is not this send's and must not be shown as its answer.
 */
export class MessageUuidTakenError extends Error {
  constructor(readonly uuid: string) {
    super(`message uuid ${uuid} is already stored for another message`);
    this.name = "MessageUuidTakenError";
  }
}

/** The stored row is this send's own (a retry whose first try committed): same owner, same number, stored after we asked Betatel. */
const isSameSend = (stored: StoredMessage, message: NewMessage) =>
  stored.team === message.team &&
  stored.to === message.to &&
  stored.verificationId === (message.verificationId ?? null) &&
  (message.requestedAt === undefined || stored.createdAt >= message.requestedAt);

const messageColumns = (from: string) =>
  `${from}uuid, ${from}"to", ${from}status, ${from}text_length AS "textLength", ${from}created_at AS "createdAt",
    ${from}updated_at AS "updatedAt", ${from}sent_at AS "sentAt", ${from}delivered_at AS "deliveredAt",
    ${from}read_at AS "readAt", ${from}failed_at AS "failedAt", ${from}expired_at AS "expiredAt",
    ${from}error_code AS "errorCode", ${from}error_message AS "errorMessage", ${from}wam_id AS "wamId",
    ${from}team, ${from}reference, ${from}metadata, ${from}verification_id AS "verificationId"`;

type StoredMessage = SummaryRow & { team: string };

const INSERT_MESSAGE = `INSERT INTO messages (uuid, "to", text_length, created_at, updated_at, team, reference, metadata,
    verification_id)
  VALUES ($1, $2, $3, $4, $4, $5, $6, $7::jsonb, $8)
  ON CONFLICT (uuid) DO NOTHING
  RETURNING ${messageColumns("")}`;
const SELECT_STORED_MESSAGE = `SELECT ${messageColumns("")} FROM messages WHERE uuid = $1`;

/**
 * Stores a message Betatel accepted, with its PENDING event, and applies any statuses that arrived before
 * it (buffered), all in one transaction whose statements each end within `withinMs`. Returns the created row.
 * If the uuid is already stored for the same send (a retry whose first try committed), returns that row
 * unchanged; if it is stored for another message, throws `MessageUuidTakenError`. Adoption
 * (`source: "reconcile"`) takes whichever row is there.
 */
export async function createMessage(
  db: Pick<Database, "pool">,
  message: NewMessage,
  withinMs?: number,
): Promise<MessageSummary> {
  const { uuid, source = "api", requestedAt } = message;
  const createdAt = message.createdAt ?? new Date();
  const row = await inTransaction(
    db.pool,
    async (sql) => {
      // The uuid's lock first, before any insert: a webhook batch that holds it may be inserting this uuid's
      // events, and waiting for the lock while holding our own inserts would be a deadlock.
      await lockMessageUuid(sql, uuid);
      const [created] = await sql<StoredMessage>(INSERT_MESSAGE, [
        uuid,
        message.to,
        message.textLength,
        createdAt,
        message.team,
        message.reference ?? null,
        message.metadata === undefined ? null : JSON.stringify(message.metadata),
        message.verificationId ?? null,
      ]);
      const stored = async () => (await sql<StoredMessage>(SELECT_STORED_MESSAGE, [uuid]))[0] as StoredMessage;
      if (!created) {
        const existing = await stored();
        if (source === "api" && !isSameSend(existing, message)) throw new MessageUuidTakenError(uuid);
        return existing;
      }
      // A webhook PENDING may have arrived first and be buffered: it is this very event, so it becomes applied.
      // It occurred when we asked Betatel (a SENT reported before our insert must not sort before it).
      await recordPendingEvent(sql, {
        uuid,
        occurredAt: requestedAt && requestedAt < created.createdAt ? requestedAt : created.createdAt,
        receivedAt: source === "api" ? created.createdAt : new Date(),
        source,
      });
      const settled = await settleBuffered(sql, uuid);
      return settled.size > 0 ? stored() : created;
    },
    withinMs === undefined ? undefined : Math.max(withinMs, 1_000),
  );
  return toSummary(row);
}

// One statement, so one snapshot: the status always comes with its event (two reads could see a status whose
// event is not committed yet). Raw and prepared: this is the polled read path, and Prisma's query compiler was a
// third of its CPU (docs/performance.md). The message, its events oldest first.
export const FIND_MESSAGE = `SELECT ${messageColumns("m.")}, e.status AS "eventStatus", e.outcome,
    e.occurred_at AS "occurredAt", e.received_at AS "receivedAt", e.source
  FROM messages m LEFT JOIN message_events e ON e.uuid = m.uuid
  WHERE m.uuid = $1 AND ($2::text IS NULL OR m.team = $2)
  ORDER BY e.occurred_at, e.id`;

type MessageWithEvent = Message & { eventStatus: MessageEvent["status"] | null } & {
  [K in "outcome" | "occurredAt" | "receivedAt" | "source"]: MessageEvent[K] | null;
};

/**
 * The message with its events, if it exists and belongs to `team` (another team's message is "not there").
 * `null` reads it whatever its team: only for a watch token, which was issued for this one message.
 */
export async function findMessage(
  db: Pick<Database, "pool">,
  uuid: string,
  team: string | null,
): Promise<MessageView | undefined> {
  const { rows } = await db.pool.query<MessageWithEvent>({
    name: "find_message",
    text: FIND_MESSAGE,
    values: [uuid, team],
  });
  const message = rows[0];
  if (!message) return undefined;
  // LEFT JOIN: every row carries one event; a message without any (not written by this service) gives nulls.
  const events =
    message.eventStatus === null ? [] : rows.map((row) => toEventView({ ...row, status: row.eventStatus } as EventRow));
  return { ...toSummary(message), events };
}

/** Where the previous page stopped: the (created_at, uuid) of its last row, the sort key of the list. */
export interface Cursor {
  createdAt: Date;
  uuid: string;
}

/** The list's filters, all optional but the page size. */
export interface MessageListFilter {
  status?: Message["status"] | undefined;
  to?: string | undefined;
  createdFrom?: Date | undefined;
  createdTo?: Date | undefined;
  reference?: string | undefined;
  cursor?: Cursor | undefined;
  limit: number;
}

const COLUMNS = `uuid, "to", status::text AS status, text_length AS "textLength", created_at AS "createdAt",
  updated_at AS "updatedAt", sent_at AS "sentAt", delivered_at AS "deliveredAt", read_at AS "readAt",
  failed_at AS "failedAt", expired_at AS "expiredAt", error_code AS "errorCode", error_message AS "errorMessage",
  wam_id AS "wamId", reference, metadata, verification_id AS "verificationId"`;

/**
 * The page query over one team's messages: keyset pagination on (created_at, uuid), newest first. Only the
 * given filters appear in the WHERE, so each filter combination matches an index on (team or the filter
 * column, created_at DESC, uuid DESC) and the scan stops after `limit + 1` rows (the extra row tells
 * whether there is a next page).
 */
export function buildListQuery(query: MessageListFilter, team: string): { text: string; values: unknown[] } {
  const values: unknown[] = [];
  const param = (value: unknown) => {
    values.push(value);
    return `$${values.length}`;
  };
  const where: string[] = [`team = ${param(team)}`];
  if (query.reference) where.push(`reference = ${param(query.reference)}`);
  if (query.status) where.push(`status = ${param(query.status)}::message_status`);
  if (query.to) where.push(`"to" = ${param(query.to)}`);
  if (query.createdFrom) where.push(`created_at >= ${param(query.createdFrom)}`);
  if (query.createdTo) where.push(`created_at < ${param(query.createdTo)}`);
  if (query.cursor) {
    where.push(`(created_at, uuid) < (${param(query.cursor.createdAt)}::timestamptz, ${param(query.cursor.uuid)})`);
  }
  const limit = param(query.limit + 1);
  return {
    text: `SELECT ${COLUMNS} FROM messages WHERE ${where.join(" AND ")}
      ORDER BY created_at DESC, uuid DESC LIMIT ${limit}`,
    values,
  };
}

/** One page of a team's messages, newest first, with one row more than `limit` when there is a next page. */
export async function selectMessagePage(db: Pick<Database, "pool">, filter: MessageListFilter, team: string) {
  const { text, values } = buildListQuery(filter, team);
  return (await db.pool.query<Message>(text, values)).rows;
}

const iso = (date: Date | null) => date?.toISOString() ?? null;

type SummaryRow = Omit<Message, "team" | "checkCount" | "lastCheckedAt" | "nextCheckAt">;

export function toSummary(row: SummaryRow): MessageSummary {
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
    reference: row.reference,
    metadata: (row.metadata as MessageSummary["metadata"]) ?? null,
    verificationId: row.verificationId,
  };
}

type EventRow = Pick<MessageEvent, "status" | "outcome" | "occurredAt" | "receivedAt" | "source">;

function toEventView(row: EventRow): EventView {
  return {
    status: row.status,
    outcome: row.outcome as EventView["outcome"],
    occurredAt: row.occurredAt.toISOString(),
    receivedAt: row.receivedAt.toISOString(),
    source: row.source,
  };
}

/**
 * Claims an Idempotency-Key: true when this request's row was inserted, false when the key is taken. In a
 * transaction of its own, so that a stalled insert is stopped and rolled back by the server (a claim that
 * committed later, unseen, would answer 409 for a day although nothing was sent).
 */
export async function insertIdempotencyClaim(
  db: Pick<Database, "pool">,
  claim: { scope: string; key: string; requestHash: string; createdAt: Date },
): Promise<boolean> {
  const inserted = await inTransaction(db.pool, (sql) =>
    sql(
      `INSERT INTO idempotency_keys (scope, key, request_hash, created_at) VALUES ($1, $2, $3, $4)
        ON CONFLICT (scope, key) DO NOTHING RETURNING 1 AS claimed`,
      [claim.scope, claim.key, claim.requestHash, claim.createdAt],
    ),
  );
  return inserted.length === 1;
}
