import { setTimeout as sleep } from "node:timers/promises";
import type pg from "pg";
import { inTransaction, pgRunner, type RunSql } from "../db/sql.ts";
import { type Outcome, TRANSITIONS } from "./state-machine.ts";
import type { Status } from "./status.ts";

/** One validated status event, ready to be applied. */
export interface StatusEvent {
  uuid: string;
  status: Status;
  /** The event's own time; null means "when it was received". */
  occurredAt: Date | null;
  source: string;
  payload: unknown;
  errorCode: string | null;
  errorMessage: string | null;
  wamId: string | null;
}

export type AppliedOutcome = Exclude<Outcome, "invalid">;

// The decision table, generated from `decide`, so the SQL and the pure function cannot drift apart.
const TRANSITION_TABLE = `transition(cur, inc, decision) AS (VALUES ${TRANSITIONS.map(
  ([current, incoming, decision]) => `('${current}'::message_status, '${incoming}'::message_status, '${decision}')`,
).join(", ")})`;

const timestampFill = (status: Status, column: string) =>
  `${column} = CASE WHEN s.status = '${status}' THEN COALESCE(m.${column}, s.occurred_at) ELSE m.${column} END`;

// Applies decided events (`s`: uuid, status, outcome, occurred_at, error_code, error_message, wam_id) to their
// message rows. `applied` moves the status; `applied` and `stale` fill that status's timestamp if empty.
const UPDATE_MESSAGES = `UPDATE messages m SET
    status = CASE WHEN s.outcome = 'applied' THEN s.status ELSE m.status END,
    ${timestampFill("SENT", "sent_at")},
    ${timestampFill("DELIVERED", "delivered_at")},
    ${timestampFill("READ", "read_at")},
    ${timestampFill("FAILED", "failed_at")},
    ${timestampFill("EXPIRED", "expired_at")},
    error_code = CASE WHEN s.status = 'FAILED' AND s.outcome = 'applied' THEN s.error_code ELSE m.error_code END,
    error_message = CASE WHEN s.status = 'FAILED' AND s.outcome = 'applied' THEN s.error_message ELSE m.error_message END,
    wam_id = COALESCE(m.wam_id, s.wam_id),
    updated_at = now()
  FROM decided s
  WHERE m.uuid = s.uuid AND s.outcome IN ('applied', 'stale')`;

/**
 * One statement for a set of events with distinct uuids: lock the known message rows (in uuid order, so
 * concurrent batches cannot deadlock), decide each event against the locked current status, insert it
 * unless (uuid, status) exists (`duplicate`), and update the messages. Unknown uuids are kept `buffered`.
 */
export const APPLY_NEW_EVENTS = `WITH ${TRANSITION_TABLE},
input AS (
  SELECT * FROM unnest($1::text[], $2::message_status[], $3::timestamptz[], $4::text[], $5::jsonb[],
                       $6::text[], $7::text[], $8::text[])
    AS i(uuid, status, occurred_at, source, payload, error_code, error_message, wam_id)
),
current_status AS MATERIALIZED (
  SELECT m.uuid, m.status FROM messages m WHERE m.uuid = ANY($1::text[]) ORDER BY m.uuid FOR UPDATE
),
inserted AS (
  INSERT INTO message_events (uuid, status, outcome, occurred_at, received_at, source, payload)
  SELECT i.uuid, i.status, COALESCE(t.decision, 'buffered'), COALESCE(i.occurred_at, now()), now(), i.source, i.payload
  FROM input i
  LEFT JOIN current_status c ON c.uuid = i.uuid
  LEFT JOIN transition t ON t.cur = c.status AND t.inc = i.status
  ORDER BY i.uuid, i.status
  ON CONFLICT (uuid, status) DO NOTHING
  RETURNING uuid, status, outcome, occurred_at
),
decided AS (
  SELECT e.*, i.error_code, i.error_message, i.wam_id FROM inserted e JOIN input i USING (uuid, status)
),
updated AS (${UPDATE_MESSAGES})
SELECT i.uuid, COALESCE(e.outcome, 'duplicate') AS outcome,
  e.outcome IS NULL AND EXISTS (
    SELECT 1 FROM message_events b WHERE b.uuid = i.uuid AND b.status = i.status AND b.outcome = 'buffered'
  ) AS unsettled
FROM input i LEFT JOIN inserted e USING (uuid, status)`;

/**
 * Decides buffered events (by id, at most one per uuid) now that their message rows exist, and applies them.
 * `$1` uuids, `$2` ids, then each event's error code, error message and wam_id read from its stored payload.
 */
const APPLY_BUFFERED_EVENTS = `WITH ${TRANSITION_TABLE},
input AS (
  SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[])
    AS i(uuid, id, error_code, error_message, wam_id)
),
current_status AS MATERIALIZED (
  SELECT m.uuid, m.status FROM messages m WHERE m.uuid = ANY($1::text[]) ORDER BY m.uuid FOR UPDATE
),
decided_event AS (
  UPDATE message_events e SET outcome = t.decision
  FROM input i JOIN current_status c ON c.uuid = i.uuid JOIN transition t ON t.cur = c.status
  WHERE e.id = i.id AND e.outcome = 'buffered' AND t.inc = e.status
  RETURNING e.uuid, e.status, e.outcome, e.occurred_at
),
decided AS (SELECT d.*, i.error_code, i.error_message, i.wam_id FROM decided_event d JOIN input i USING (uuid)),
updated AS (${UPDATE_MESSAGES})
SELECT uuid, status, outcome FROM decided_event`;

function toColumns(events: StatusEvent[]): unknown[] {
  return [
    events.map((e) => e.uuid),
    events.map((e) => e.status),
    events.map((e) => e.occurredAt),
    events.map((e) => e.source),
    events.map((e) => (e.payload === undefined ? null : JSON.stringify(e.payload))),
    events.map((e) => e.errorCode),
    events.map((e) => e.errorMessage),
    events.map((e) => e.wamId),
  ];
}

/**
 * Splits events into waves in which each uuid appears once, keeping each uuid's events in arrival order:
 * wave k holds every uuid's k-th event. One statement per wave applies the batch set-based.
 */
function waves(events: ReadonlyArray<{ uuid: string }>): number[][] {
  const result: number[][] = [];
  const seen = new Map<string, number>();
  events.forEach((event, index) => {
    const wave = seen.get(event.uuid) ?? 0;
    seen.set(event.uuid, wave + 1);
    const members = result[wave] ?? [];
    members.push(index);
    result[wave] = members;
  });
  return result;
}

interface WaveResult {
  outcome: AppliedOutcome;
  /** A duplicate of an event still buffered: its settling may have been lost, so it is tried again. */
  unsettled: boolean;
}

/**
 * One event: the plpgsql function `apply_status_event` (its migration), the same decision and writes as
 * `APPLY_NEW_EVENTS` for one row, but a fraction of its database CPU, and a repeat takes no row lock and writes nothing.
 */
const APPLY_ONE_EVENT = `SELECT o_outcome AS outcome, o_unsettled AS unsettled
  FROM apply_status_event($1, $2::message_status, $3, $4, $5::jsonb, $6, $7, $8)`;

async function applyWave(sql: RunSql, events: StatusEvent[]): Promise<WaveResult[]> {
  const only = events.length === 1 ? events[0] : undefined;
  if (only) {
    const [row] = await sql<WaveResult>(
      APPLY_ONE_EVENT,
      [
        only.uuid,
        only.status,
        only.occurredAt,
        only.source,
        only.payload === undefined ? null : JSON.stringify(only.payload),
        only.errorCode,
        only.errorMessage,
        only.wamId,
      ],
      "apply_one_event",
    );
    return [row ?? { outcome: "duplicate", unsettled: false }];
  }
  // Prepared once per connection: planning this statement costs more than running it.
  const rows = await sql<{ uuid: string } & WaveResult>(APPLY_NEW_EVENTS, toColumns(events), "apply_new_events");
  // Rows come back in input order for distinct uuids; map by uuid to not depend on it.
  const byUuid = new Map(rows.map((row) => [row.uuid, row]));
  return events.map((event) => byUuid.get(event.uuid) ?? { outcome: "duplicate", unsettled: false });
}

// Deadlock and serialization failure: the statement or transaction was rolled back whole, so running it
// again is safe. A deadlock can only arise between batches carrying several events of the same unknown uuids.
const RETRYABLE_SQLSTATE = new Set(["40P01", "40001"]);
const MAX_ATTEMPTS = 5;

/** A deadlock or serialization failure: nothing was written, and the sender may simply try again. */
export const isTransientConflict = (error: unknown): boolean => {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" && RETRYABLE_SQLSTATE.has(code);
};

async function retryOnConflict<T>(work: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await work();
    } catch (error) {
      if (attempt >= MAX_ATTEMPTS || !isTransientConflict(error)) throw error;
      // Jitter, so two transactions that just deadlocked do not meet again in step.
      await sleep(Math.random() * 20 * attempt);
    }
  }
}

export interface ApplyResult {
  /** One outcome per event, in order. */
  outcomes: AppliedOutcome[];
  /** Uuids whose buffered events were settled here (their message rows changed, maybe not by these events). */
  settled: string[];
}

/**
 * Stores and applies status events atomically, then settles any that were buffered (see `settleBuffered`).
 * A (uuid, status) pair repeated within `events` is applied once; its repeats are `duplicate`. Nothing is
 * answered before the events are committed.
 */
export async function applyStatusEvents(pool: pg.Pool, events: StatusEvent[]): Promise<ApplyResult> {
  // At most one step per distinct status of a uuid, however often a batch repeats it.
  const distinct: StatusEvent[] = [];
  const slotOf = new Map<string, number>();
  const slots = events.map((event) => {
    const key = `${event.uuid}\u0000${event.status}`;
    if (slotOf.has(key)) return -1;
    slotOf.set(key, distinct.length);
    return distinct.push(event) - 1;
  });
  if (distinct.length === 0) return { outcomes: [], settled: [] };

  const groups = waves(distinct);
  const outcomes: AppliedOutcome[] = new Array(distinct.length);
  const toSettle = new Set<string>();
  const run = async (sql: RunSql) => {
    toSettle.clear();
    // Several statements insert this batch's events; another multi-step batch inserting the same keys in another
    // order would deadlock with it. Taking the locks of all its uuids first, in one order, queues such batches.
    if (groups.length > 1)
      await lockBatchBuckets(
        sql,
        distinct.map((event) => event.uuid),
      );
    for (const group of groups) {
      const results = await applyWave(
        sql,
        group.map((index) => distinct[index] as StatusEvent),
      );
      group.forEach((index, k) => {
        const result = results[k] as WaveResult;
        outcomes[index] = result.outcome;
        if (result.outcome === "buffered" || result.unsettled) toSettle.add((distinct[index] as StatusEvent).uuid);
      });
    }
  };
  // A single wave is one statement: autocommit, no BEGIN/COMMIT round trips.
  await retryOnConflict(() => (groups.length === 1 ? run(pgRunner(pool)) : inTransaction(pool, run)));

  const settled = await settleInChunks(pool, [...toSettle]);
  return {
    outcomes: slots.map((slot, i) => {
      if (slot < 0) return "duplicate";
      const event = events[i] as StatusEvent;
      const outcome = outcomes[slot] as AppliedOutcome;
      return (outcome === "buffered" && settled.get(event.uuid)?.get(event.status)) || outcome;
    }),
    settled: [...settled.keys()],
  };
}

// Advisory locks live in Postgres's shared lock table (about max_locks_per_transaction x max_connections entries,
// 6,400 by default): a transaction must not take one per uuid of a 1,000-item request.
const SETTLE_CHUNK = 64;
const BATCH_LOCK_NAMESPACE = 0x6f7470; // "otp": two-int advisory keys, apart from the per-uuid bigint keys
const BATCH_LOCK_BUCKETS = 64;

/**
 * The multi-step batches' locks: one per bucket of uuids (at most 64 per transaction), taken in bucket order. Two
 * such batches sharing a uuid share its bucket, so the later one waits before inserting anything.
 */
const lockBatchBuckets = (sql: RunSql, uuids: string[]) =>
  sql(
    `SELECT count(pg_advisory_xact_lock(${BATCH_LOCK_NAMESPACE}, bucket)) AS locked
     FROM (SELECT DISTINCT (hashtextextended(u, 0) & ${BATCH_LOCK_BUCKETS - 1})::int AS bucket
           FROM unnest($1::text[]) AS u ORDER BY bucket) AS buckets`,
    [uuids],
  );

/** `settleBufferedMany` over `uuids`, at most `SETTLE_CHUNK` uuids (and so advisory locks) per transaction. */
async function settleInChunks(pool: pg.Pool, uuids: string[]): Promise<Map<string, Map<Status, AppliedOutcome>>> {
  const settled = new Map<string, Map<Status, AppliedOutcome>>();
  for (let start = 0; start < uuids.length; start += SETTLE_CHUNK) {
    const chunk = uuids.slice(start, start + SETTLE_CHUNK);
    const result = await retryOnConflict(() => inTransaction(pool, (sql) => settleBufferedMany(sql, chunk)));
    for (const [uuid, outcomes] of result) settled.set(uuid, outcomes);
  }
  return settled;
}

/** Advisory locks of several uuids, taken in one order (by lock key) so two takers cannot deadlock. */
const lockUuids = (sql: RunSql, uuids: string[]) =>
  sql(
    `SELECT count(pg_advisory_xact_lock(key)) AS locked
     FROM (SELECT DISTINCT hashtextextended(u, 0) AS key FROM unnest($1::text[]) AS u ORDER BY key) AS keys`,
    [uuids],
  );

/** Serialises "settle buffered events" with the insert of the message row, per uuid. */
export const lockMessageUuid = (sql: RunSql, uuid: string) =>
  sql("SELECT 1 AS locked FROM pg_advisory_xact_lock(hashtextextended($1, 0))", [uuid]);

/**
 * The PENDING event of a message row just stored. A PENDING that arrived through the webhook before the row is
 * this very event, kept buffered: it becomes applied.
 */
export const recordPendingEvent = (
  sql: RunSql,
  event: { uuid: string; occurredAt: Date; receivedAt: Date; source: string },
) =>
  sql(
    `INSERT INTO message_events (uuid, status, outcome, occurred_at, received_at, source)
     VALUES ($1, 'PENDING', 'applied', $2, $3, $4)
     ON CONFLICT (uuid, status) DO UPDATE SET outcome = 'applied'`,
    [event.uuid, event.occurredAt, event.receivedAt, event.source],
  );

/** `settleBufferedMany` for one uuid: the decided outcome per status. */
export async function settleBuffered(sql: RunSql, uuid: string): Promise<Map<Status, AppliedOutcome>> {
  return (await settleBufferedMany(sql, [uuid])).get(uuid) ?? new Map();
}

/**
 * Applies the buffered events of `uuids` whose message rows exist, each uuid's in the order they occurred (then
 * arrival), so statuses buffered before the row end the same as had they arrived after it. Set-based: one
 * statement per k-th event of every uuid. Must run inside a transaction. It takes the per-uuid advisory locks
 * first, as does the insert of a message row (`createMessage`), so a status and the row arriving at the same
 * moment can never both miss each other: whichever commits second sees the other's write. Returns the decided
 * outcome per status, for each uuid that had any.
 */
export async function settleBufferedMany(
  sql: RunSql,
  uuids: string[],
): Promise<Map<string, Map<Status, AppliedOutcome>>> {
  await lockUuids(sql, uuids);
  const pending = await sql<{ id: string; uuid: string; status: Status; payload: unknown }>(
    `SELECT e.id::text, e.uuid, e.status, e.payload FROM message_events e
     WHERE e.uuid = ANY($1::text[]) AND e.outcome = 'buffered'
       AND EXISTS (SELECT 1 FROM messages m WHERE m.uuid = e.uuid)
     ORDER BY e.uuid, e.occurred_at, e.id FOR UPDATE OF e`,
    [uuids],
  );
  const settled = new Map<string, Map<Status, AppliedOutcome>>();
  const byWave = waves(pending as Array<{ uuid: string }>);
  for (const group of byWave) {
    const wave = group.map((index) => pending[index] as (typeof pending)[number]);
    const details = wave.map((event) => readEventDetails(event.payload));
    const rows = await sql<{ uuid: string; status: Status; outcome: AppliedOutcome }>(
      APPLY_BUFFERED_EVENTS,
      [
        wave.map((event) => event.uuid),
        wave.map((event) => event.id),
        details.map((d) => d.errorCode),
        details.map((d) => d.errorMessage),
        details.map((d) => d.wamId),
      ],
      "apply_buffered_events",
    );
    for (const row of rows) {
      const outcomes = settled.get(row.uuid) ?? new Map<Status, AppliedOutcome>();
      outcomes.set(row.status, row.outcome);
      settled.set(row.uuid, outcomes);
    }
  }
  return settled;
}

/** Error reason and wam_id of a stored raw item (the payload the webhook kept). */
function readEventDetails(payload: unknown): Pick<StatusEvent, "errorCode" | "errorMessage" | "wamId"> {
  const item = (payload ?? {}) as Record<string, unknown>;
  const { code, message } = errorReason(item.error);
  return { errorCode: code, errorMessage: message, wamId: typeof item.wam_id === "string" ? item.wam_id : null };
}

/** `error` as given by Betatel: a string, or `{code, message}` / `{code, title}`. */
export function errorReason(error: unknown): { code: string | null; message: string | null } {
  if (typeof error === "string") return { code: null, message: error.slice(0, 1000) };
  if (error && typeof error === "object") {
    const { code, message, title } = error as Record<string, unknown>;
    const text = typeof message === "string" ? message : typeof title === "string" ? title : null;
    const codeText = typeof code === "string" || typeof code === "number" ? String(code) : null;
    return { code: codeText?.slice(0, 200) ?? null, message: text?.slice(0, 1000) ?? null };
  }
  return { code: null, message: null };
}

/**
 * Settles buffered events whose message row exists: what a crash between storing a status and settling it
 * leaves behind (the sender's retry would settle it too, but a sender may never retry). Run periodically by
 * the reconcile job; returns the uuids it settled.
 */
export async function settleStragglers(pool: pg.Pool, limit = 100): Promise<string[]> {
  const { rows } = await pool.query<{ uuid: string }>(
    `SELECT DISTINCT e.uuid FROM message_events e
     WHERE e.outcome = 'buffered' AND EXISTS (SELECT 1 FROM messages m WHERE m.uuid = e.uuid)
     LIMIT $1`,
    [limit],
  );
  return [
    ...(
      await settleInChunks(
        pool,
        rows.map((row) => row.uuid),
      )
    ).keys(),
  ];
}
