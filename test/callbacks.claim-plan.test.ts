import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CLAIM_DUE_DELIVERIES } from "../src/callbacks/repository.ts";
import type { Database } from "../src/db/database.ts";
import { openIsolatedDatabase } from "./support/isolated-database.ts";

// The worker claims again each time a delivery ends, so the claim's cost is paid once per callback: it must read
// about what it claims, however long the queue and whatever the planner knows of it. A backlog (an endpoint that
// was down, a burst of statuses) fills the queue faster than autovacuum analyzes it, so the queue here is
// written and claimed in one transaction: the planner has no statistics of those rows, as then.

const QUEUED = 30_000;

interface PlanNode {
  "Relation Name"?: string;
  "Actual Rows": number;
  "Actual Loops": number;
  Plans?: PlanNode[];
}

/** Rows the plan read from `callback_deliveries`, over every node and loop. */
function deliveryRowsRead(node: PlanNode): number {
  const own = node["Relation Name"] === "callback_deliveries" ? node["Actual Rows"] * node["Actual Loops"] : 0;
  return own + (node.Plans ?? []).reduce((sum, child) => sum + deliveryRowsRead(child), 0);
}

let db: Database;
beforeAll(async () => {
  db = await openIsolatedDatabase(1);
});
afterAll(() => db?.close());

describe("claiming due status callbacks", () => {
  it("when 30,000 callbacks are queued for one endpoint (three per message, not yet analyzed), then a claim reads a few dozen rows, not the queue", async () => {
    const client: pg.PoolClient = await db.pool.connect();
    try {
      await client.query("BEGIN");
      await client.query(
        "INSERT INTO callback_endpoints (id, team, url) VALUES ('cb_plan', 'plan', 'https://example.com/hook')",
      );
      await client.query(
        `INSERT INTO callback_deliveries (event_id, endpoint_id, team, type, subject, sequence, payload, next_attempt_at)
         SELECT 'evt_' || n, 'cb_plan', 'plan', 'message.status', 'msg-' || ((n - 1) / 3), 1 + (n - 1) % 3, '{}'::jsonb,
                now() - interval '1 hour' + n * interval '1 millisecond'
           FROM generate_series(1, $1::int) AS n`,
        [QUEUED],
      );
      const { rows } = await client.query<{ "QUERY PLAN": Array<{ Plan: PlanNode }> }>(
        `EXPLAIN (ANALYZE, FORMAT JSON) ${CLAIM_DUE_DELIVERIES}`,
        [new Date(), 60_000, 32, 128, []],
      );
      const plan = rows[0]?.["QUERY PLAN"][0]?.Plan as PlanNode;

      // 32 claimed (the first event of 32 messages), each checked against its message's first pending event.
      expect(deliveryRowsRead(plan)).toBeLessThan(1_000);
    } finally {
      await client.query("ROLLBACK");
      client.release();
    }
  });
});
