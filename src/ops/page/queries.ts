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
 * The scope every windowed query shares: messages created since `$1`, of team `$2` (null: all teams). The
 * numbers match the ops_* views (same buckets and filters), but each query names `created_at` itself so the
 * created_at indexes bound it to the window (a view's `hour` column cannot use an index). With a team, the
 * null test folds away when the query is planned with its values, and (team, created_at) bounds it instead.
 */
const TEAM = `($2::text IS NULL OR team = $2)`;
const SCOPE = `created_at >= $1 AND ${TEAM}`;
const scopeValues = (since: Date, team: string | null): unknown[] => [since, team];
// Buckets are aligned to the epoch in UTC, like the views' date_trunc('hour', ..., 'UTC').
const BUCKET = `date_bin(make_interval(secs => $3), created_at, timestamptz '1970-01-01 00:00:00+00')`;

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

// Stuck: rows of ops_stuck_messages waiting longer than the reconciler's threshold ($1 seconds), of team $2
// (null: all), with what the reconciler did about them. `created_at <` (not `age >`) lets the partial index of
// unresolved messages bound it.
const STUCK_SUMMARY = `
  SELECT count(*)::int AS messages,
         count(*) FILTER (WHERE m.check_count > 0)::int AS checked,
         coalesce(sum(m.check_count), 0)::int AS checks
  FROM ops_stuck_messages s JOIN messages m ON m.uuid = s.uuid
  WHERE s.created_at < now() - make_interval(secs => $1) AND ($2::text IS NULL OR s.team = $2)`;
const STUCK_OLDEST = `
  SELECT s.uuid, s."to", s.status::text AS status, s.created_at,
         extract(epoch FROM s.in_status_for)::float8 AS in_status_seconds,
         m.check_count, m.last_checked_at, m.next_check_at
  FROM ops_stuck_messages s JOIN messages m ON m.uuid = s.uuid
  WHERE s.created_at < now() - make_interval(secs => $1) AND ($2::text IS NULL OR s.team = $2)
  ORDER BY s.created_at LIMIT 10`;

// The background jobs' statuses and the buffered ones are not per team (a buffered status has no message yet):
// they are always for all teams, and the page says so.
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

/**
 * The teams to choose from: every team with messages (a skip scan of the (team, created_at) index: one index
 * descent per team, not a pass over the table), plus teams with keys or callback endpoints and no sends yet.
 */
const TEAMS = `
  WITH RECURSIVE sending AS (
    (SELECT team FROM messages ORDER BY team LIMIT 1)
    UNION ALL
    SELECT (SELECT m.team FROM messages m WHERE m.team > sending.team ORDER BY m.team LIMIT 1)
    FROM sending WHERE sending.team IS NOT NULL
  )
  SELECT team FROM sending WHERE team IS NOT NULL
  UNION SELECT team FROM api_keys WHERE revoked_at IS NULL
  UNION SELECT team FROM callback_endpoints
  ORDER BY team LIMIT 500`;

// Callback delivery health, as ops_callback_health defines it but bounded: the backlog through the partial
// index of pending deliveries, the window's outcomes through created_at, endpoints from their own small table.
const CALLBACK_BACKLOG = `
  SELECT count(*)::int AS pending, extract(epoch FROM now() - min(created_at))::float8 AS oldest_pending_seconds
  FROM callback_deliveries WHERE status = 'pending' AND ${TEAM.replaceAll("$2", "$1")}`;
const CALLBACK_WINDOW = `
  SELECT count(*) FILTER (WHERE status = 'delivered')::int AS delivered,
         count(*) FILTER (WHERE status = 'failed')::int AS failed,
         count(*) FILTER (WHERE status = 'pending')::int AS pending
  FROM callback_deliveries WHERE ${SCOPE}`;
// The team's endpoints, failing or disabled first, then by backlog (10 shown, all counted).
const CALLBACK_ENDPOINTS = `
  SELECT e.id, e.team, e.url, e.enabled, e.disabled_reason, e.failing_since,
         coalesce(p.pending, 0)::int AS pending, p.oldest_pending_at,
         count(*) OVER ()::int AS endpoints,
         count(*) FILTER (WHERE NOT e.enabled OR e.failing_since IS NOT NULL) OVER ()::int AS failing
  FROM callback_endpoints e
  LEFT JOIN (SELECT endpoint_id, count(*) AS pending, min(created_at) AS oldest_pending_at
             FROM callback_deliveries WHERE status = 'pending' AND ${TEAM.replaceAll("$2", "$1")}
             GROUP BY 1) p ON p.endpoint_id = e.id
  WHERE ($1::text IS NULL OR e.team = $1)
  ORDER BY (NOT e.enabled OR e.failing_since IS NOT NULL) DESC, pending DESC, e.id
  LIMIT 10`;

// The verification funnel over the window, as ops_verification_funnel counts it per hour: started, whether a
// message of it was delivered (or read) and read, how it ended, and the median start-to-approval time.
const VERIFICATION_FUNNEL = `
  SELECT count(*)::int AS started,
         count(*) FILTER (WHERE d.delivered)::int AS delivered,
         count(*) FILTER (WHERE d.read)::int AS read,
         count(*) FILTER (WHERE v.status = 'approved')::int AS approved,
         count(*) FILTER (WHERE v.status = 'expired')::int AS expired,
         count(*) FILTER (WHERE v.status = 'max_attempts_reached')::int AS max_attempts_reached,
         count(*) FILTER (WHERE v.status = 'canceled')::int AS canceled,
         count(*) FILTER (WHERE v.status = 'pending')::int AS pending,
         percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM v.approved_at - v.created_at))
           FILTER (WHERE v.approved_at IS NOT NULL) AS median_seconds_to_approval
  FROM verifications v
  CROSS JOIN LATERAL (
    SELECT coalesce(bool_or(m.delivered_at IS NOT NULL OR m.read_at IS NOT NULL), false) AS delivered,
           coalesce(bool_or(m.read_at IS NOT NULL), false) AS read
    FROM messages m WHERE m.verification_id = v.id) d
  WHERE v.created_at >= $1 AND ($2::text IS NULL OR v.team = $2)`;

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
  /** The team the message numbers are for; null: all teams. */
  team: string | null;
  /** The teams to choose from. */
  teams: string[];
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
  /** Always all teams: these carry no team. */
  background: {
    reconcile: Record<string, number>;
    expiry: Record<string, number>;
    buffered: { events: number; oldestReceivedAt: string | null };
  };
  callbacks: {
    /** Deliveries waiting to go out (any age), and how long the oldest has waited. */
    pending: number;
    oldestPendingSeconds: number | null;
    /** Deliveries created in the window, by their current status. */
    window: { delivered: number; failed: number; pending: number };
    endpoints: number;
    /** Endpoints disabled or failing (every attempt failed since `failingSince`). */
    failingEndpoints: number;
    /** Up to 10 endpoints, failing or disabled first, then by backlog. */
    attention: {
      id: string;
      team: string;
      url: string;
      enabled: boolean;
      disabledReason: string | null;
      failingSince: string | null;
      pending: number;
      oldestPendingAt: string | null;
    }[];
  };
  verifications: {
    started: number;
    delivered: number;
    read: number;
    approved: number;
    expired: number;
    maxAttemptsReached: number;
    canceled: number;
    pending: number;
    medianSecondsToApproval: number | null;
  };
}

/** An endpoint's address without what may be a secret (user info, query, fragment). */
function withoutSecrets(url: string): string {
  try {
    const parsed = new URL(url);
    return `${parsed.origin}${parsed.pathname}`;
  } catch {
    return "(invalid address)";
  }
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
  options: { window: WindowName; team?: string | null; stuckAfterMs: number; now?: Date },
): Promise<Overview> {
  const { seconds, bucketSeconds } = WINDOWS[options.window];
  const now = options.now ?? new Date();
  const since = new Date(now.getTime() - seconds * 1000);
  const team = options.team ?? null;
  const scope = scopeValues(since, team);
  const stuckAfter = [options.stuckAfterMs / 1000, team];
  const [
    stats,
    failures,
    stuckSummary,
    stuckOldest,
    background,
    buffered,
    teams,
    callbackBacklog,
    callbackWindow,
    callbackEndpoints,
    funnel,
  ] = await inReadOnlySnapshot(pool, async (client) => [
    await client.query(WINDOW_STATS, [...scope, bucketSeconds]),
    await client.query(TOP_FAILURES, scope),
    await client.query(STUCK_SUMMARY, stuckAfter),
    await client.query(STUCK_OLDEST, stuckAfter),
    await client.query(BACKGROUND, [since]),
    await client.query(BUFFERED),
    await client.query(TEAMS),
    await client.query(CALLBACK_BACKLOG, [team]),
    await client.query(CALLBACK_WINDOW, scope),
    await client.query(CALLBACK_ENDPOINTS, [team]),
    await client.query(VERIFICATION_FUNNEL, scope),
  ]);

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
    team,
    teams: teams.rows.map((r) => r.team),
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
    callbacks: {
      pending: callbackBacklog.rows[0]?.pending ?? 0,
      oldestPendingSeconds: callbackBacklog.rows[0]?.oldest_pending_seconds ?? null,
      window: {
        delivered: callbackWindow.rows[0]?.delivered ?? 0,
        failed: callbackWindow.rows[0]?.failed ?? 0,
        pending: callbackWindow.rows[0]?.pending ?? 0,
      },
      endpoints: callbackEndpoints.rows[0]?.endpoints ?? 0,
      failingEndpoints: callbackEndpoints.rows[0]?.failing ?? 0,
      attention: callbackEndpoints.rows.map((r) => ({
        id: r.id,
        team: r.team,
        url: withoutSecrets(r.url),
        enabled: r.enabled,
        disabledReason: r.disabled_reason,
        failingSince: iso(r.failing_since),
        pending: r.pending,
        oldestPendingAt: iso(r.oldest_pending_at),
      })),
    },
    verifications: {
      started: funnel.rows[0]?.started ?? 0,
      delivered: funnel.rows[0]?.delivered ?? 0,
      read: funnel.rows[0]?.read ?? 0,
      approved: funnel.rows[0]?.approved ?? 0,
      expired: funnel.rows[0]?.expired ?? 0,
      maxAttemptsReached: funnel.rows[0]?.max_attempts_reached ?? 0,
      canceled: funnel.rows[0]?.canceled ?? 0,
      pending: funnel.rows[0]?.pending ?? 0,
      medianSecondsToApproval: funnel.rows[0]?.median_seconds_to_approval ?? null,
    },
  };
}

/** The queries, for the plan test (EXPLAIN) and the benchmark. */
export const OVERVIEW_QUERIES = {
  WINDOW_STATS,
  TOP_FAILURES,
  STUCK_SUMMARY,
  TEAMS,
  CALLBACK_BACKLOG,
  CALLBACK_WINDOW,
  VERIFICATION_FUNNEL,
};
