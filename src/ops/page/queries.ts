import type pg from "pg";
import { maskPhone } from "../../phone/phone.ts";
import { STATUSES, type Status } from "../../tracking/status.ts";

/** The page's time windows: how far back, and the width of one chart bucket. */
export const WINDOWS = {
  "1h": { seconds: 3_600, bucketSeconds: 300 },
  "24h": { seconds: 86_400, bucketSeconds: 3_600 },
  "7d": { seconds: 7 * 86_400, bucketSeconds: 3_600 },
} as const;
export type WindowName = keyof typeof WINDOWS;

/**
 * The scope every windowed query shares: messages created since `$1`. The numbers match the ops_* views
 * (same buckets and filters), but each query names `created_at` itself so the created_at indexes bound it
 * to the window; a view's `hour` column cannot use an index. Per-team filtering, once messages carry a
 * team, is one more condition here (`AND team = $3`) and one more value in `scopeValues`; the stuck queries
 * take the same condition on `m.team`.
 */
const SCOPE = `created_at >= $1`;
const scopeValues = (since: Date): unknown[] => [since];

// Buckets are aligned to the epoch in UTC, like the views' date_trunc('hour', ..., 'UTC').
const BUCKET = `date_bin(make_interval(secs => $2), created_at, timestamptz '1970-01-01 00:00:00+00')`;

// Seconds from creation (the send) to each status, as p50/p95/p99, over the messages that reached it.
const percentiles = (column: string) =>
  `percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY extract(epoch FROM ${column} - created_at))
     FILTER (WHERE ${column} IS NOT NULL) AS ${column.replace("_at", "")}`;

// One pass over the window: per bucket and (bucket NULL) over the whole window, the messages by current status
// (as ops_messages_per_hour counts them) and the latency percentiles.
const WINDOW_STATS = `
  SELECT extract(epoch FROM bucket)::bigint AS bucket,
         ${STATUSES.map((s) => `count(*) FILTER (WHERE status = '${s}')::int AS "${s}"`).join(", ")},
         ${percentiles("sent_at")}, ${percentiles("delivered_at")}, ${percentiles("read_at")}
  FROM (SELECT ${BUCKET} AS bucket, status, created_at, sent_at, delivered_at, read_at
        FROM messages WHERE ${SCOPE}) AS windowed
  GROUP BY GROUPING SETS ((bucket), ())`;

// Failed messages created in the window by reason (as ops_failure_reasons_per_day groups them), newest sample.
const TOP_FAILURES = `
  SELECT error_code, error_message, count(*)::int AS messages,
         (array_agg(uuid ORDER BY created_at DESC))[1] AS sample_uuid
  FROM messages WHERE status = 'FAILED' AND ${SCOPE}
  GROUP BY 1, 2 ORDER BY 3 DESC, 1 NULLS LAST LIMIT 10`;

// Stuck: rows of ops_stuck_messages waiting longer than the reconciler's threshold ($1 seconds), with what the
// reconciler did about them. `created_at <` (not `age >`) lets the partial index of unresolved messages bound it.
const STUCK_SUMMARY = `
  SELECT count(*)::int AS messages,
         count(*) FILTER (WHERE m.check_count > 0)::int AS checked,
         coalesce(sum(m.check_count), 0)::int AS checks
  FROM ops_stuck_messages s JOIN messages m ON m.uuid = s.uuid
  WHERE s.created_at < now() - make_interval(secs => $1)`;
const STUCK_OLDEST = `
  SELECT s.uuid, s."to", s.status::text AS status, s.created_at,
         extract(epoch FROM s.in_status_for)::float8 AS in_status_seconds,
         m.check_count, m.last_checked_at, m.next_check_at
  FROM ops_stuck_messages s JOIN messages m ON m.uuid = s.uuid
  WHERE s.created_at < now() - make_interval(secs => $1)
  ORDER BY s.created_at LIMIT 10`;

// Statuses the reconciler (Betatel's delivery records) and the expiry job wrote in the window.
const BACKGROUND = `
  SELECT source, status::text AS status, count(*)::int AS events
  FROM message_events
  WHERE received_at >= $1 AND source IN ('reconcile', 'expiry')
  GROUP BY 1, 2`;
// Statuses that arrived before their message and wait for it (not windowed: all of them).
const BUFFERED = `
  SELECT count(*)::int AS events, min(received_at) AS oldest
  FROM message_events WHERE outcome = 'buffered'`;

type Percentiles = [number, number, number] | null;
export interface LatencySeries {
  p50: (number | null)[];
  p95: (number | null)[];
  p99: (number | null)[];
}
const LATENCY_TARGETS = ["sent", "delivered", "read"] as const;

export interface Overview {
  readAt: string;
  window: WindowName;
  since: string;
  bucketSeconds: number;
  /** Bucket starts, epoch seconds, oldest first (every bucket of the window, empty ones too). */
  buckets: number[];
  statuses: Record<Status, number[]>;
  totals: Record<Status, number> & { all: number };
  latency: Record<(typeof LATENCY_TARGETS)[number], LatencySeries>;
  latencyOverall: Record<
    (typeof LATENCY_TARGETS)[number],
    { p50: number | null; p95: number | null; p99: number | null }
  >;
  failures: { code: string | null; message: string | null; messages: number; sampleUuid: string }[];
  stuck: {
    afterSeconds: number;
    messages: number;
    checked: number;
    checks: number;
    oldest: {
      uuid: string;
      to: string;
      status: string;
      createdAt: string;
      inStatusSeconds: number;
      checkCount: number;
      lastCheckedAt: string | null;
      nextCheckAt: string | null;
    }[];
  };
  background: {
    reconcile: Record<string, number>;
    expiry: Record<string, number>;
    buffered: { events: number; oldestReceivedAt: string | null };
  };
}

const iso = (value: Date | null) => (value ? value.toISOString() : null);

/**
 * Runs `work` on one connection (not one per query: the webhook's pool stays free) in one read-only snapshot
 * (the panels agree with each other), with a time limit so a slow read cannot hold the connection.
 */
async function inReadOnlySnapshot<T>(pool: pg.Pool, work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
    await client.query("SET LOCAL statement_timeout = '10s'");
    const result = await work(client);
    await client.query("COMMIT");
    client.release();
    return result;
  } catch (error) {
    client.release(true); // not back to the pool in an unknown state
    throw error;
  }
}

/** Everything the ops page shows for one window, read in one read-only snapshot (each query bounded). */
export async function readOverview(
  pool: pg.Pool,
  options: { window: WindowName; stuckAfterMs: number; now?: Date },
): Promise<Overview> {
  const { seconds, bucketSeconds } = WINDOWS[options.window];
  const now = options.now ?? new Date();
  const since = new Date(now.getTime() - seconds * 1000);
  const scope = scopeValues(since);
  const stuckAfter = [options.stuckAfterMs / 1000];
  const [stats, failures, stuckSummary, stuckOldest, background, buffered] = await inReadOnlySnapshot(
    pool,
    async (client) => [
      await client.query(WINDOW_STATS, [...scope, bucketSeconds]),
      await client.query(TOP_FAILURES, scope),
      await client.query(STUCK_SUMMARY, stuckAfter),
      await client.query(STUCK_OLDEST, stuckAfter),
      await client.query(BACKGROUND, [since]),
      await client.query(BUFFERED),
    ],
  );

  const first = Math.floor(since.getTime() / 1000 / bucketSeconds) * bucketSeconds;
  const buckets: number[] = [];
  for (let at = first; at <= now.getTime() / 1000; at += bucketSeconds) buckets.push(at);
  const index = new Map(buckets.map((at, i) => [at, i]));
  const zeros = () => buckets.map(() => 0);
  const nulls = () => buckets.map((): number | null => null);

  const statuses = Object.fromEntries(STATUSES.map((s) => [s, zeros()])) as Record<Status, number[]>;
  const latencySeries = Object.fromEntries(
    LATENCY_TARGETS.map((t) => [t, { p50: nulls(), p95: nulls(), p99: nulls() }]),
  ) as Overview["latency"];
  const whole = stats.rows.find((row) => row.bucket === null) ?? {};
  for (const row of stats.rows) {
    const i = index.get(Number(row.bucket));
    if (row.bucket === null || i === undefined) continue;
    for (const status of STATUSES) statuses[status][i] = row[status];
    for (const target of LATENCY_TARGETS) {
      const values = row[target] as Percentiles;
      latencySeries[target].p50[i] = values?.[0] ?? null;
      latencySeries[target].p95[i] = values?.[1] ?? null;
      latencySeries[target].p99[i] = values?.[2] ?? null;
    }
  }
  const totals = Object.fromEntries(STATUSES.map((s) => [s, whole[s] ?? 0])) as Record<Status, number>;
  const latencyOverall = Object.fromEntries(
    LATENCY_TARGETS.map((t) => {
      const values = whole[t] as Percentiles;
      return [t, { p50: values?.[0] ?? null, p95: values?.[1] ?? null, p99: values?.[2] ?? null }];
    }),
  ) as Overview["latencyOverall"];

  const bySource = (source: string) =>
    Object.fromEntries(background.rows.filter((r) => r.source === source).map((r) => [r.status, r.events]));

  return {
    readAt: new Date().toISOString(),
    window: options.window,
    since: since.toISOString(),
    bucketSeconds,
    buckets,
    statuses,
    totals: { ...totals, all: STATUSES.reduce((sum, s) => sum + totals[s], 0) },
    latency: latencySeries,
    latencyOverall,
    failures: failures.rows.map((r) => ({
      code: r.error_code,
      message: r.error_message,
      messages: r.messages,
      sampleUuid: r.sample_uuid,
    })),
    stuck: {
      afterSeconds: stuckAfter[0] as number,
      messages: stuckSummary.rows[0]?.messages ?? 0,
      checked: stuckSummary.rows[0]?.checked ?? 0,
      checks: stuckSummary.rows[0]?.checks ?? 0,
      oldest: stuckOldest.rows.map((r) => ({
        uuid: r.uuid,
        to: maskPhone(r.to),
        status: r.status,
        createdAt: r.created_at.toISOString(),
        inStatusSeconds: r.in_status_seconds,
        checkCount: r.check_count,
        lastCheckedAt: iso(r.last_checked_at),
        nextCheckAt: iso(r.next_check_at),
      })),
    },
    background: {
      reconcile: bySource("reconcile"),
      expiry: bySource("expiry"),
      buffered: { events: buffered.rows[0]?.events ?? 0, oldestReceivedAt: iso(buffered.rows[0]?.oldest ?? null) },
    },
  };
}

/** The queries, for the plan test (EXPLAIN) and the benchmark. */
export const OVERVIEW_QUERIES = { WINDOW_STATS, TOP_FAILURES, STUCK_SUMMARY };
