/**
 * The baseline peer: the least a Node webhook can be while doing the same work as the service for one status —
 * node:http, JSON.parse, a few hand-written field checks, and one prepared call of a plpgsql function that records
 * the event once per (uuid, status) and moves the message forward only when the status is newer. It also answers
 * `GET /v1/messages/:uuid` with the service's own prepared read, the least a Node read can be. Run by the bench
 * as its own process (`tsx bench/baseline-peer.ts <databaseUrl> <port> <secret> <apiKey>`), against its own messages.
 * It knows only the single-path histories the bench sends; the service handles every case of the state machine.
 */
import { createServer } from "node:http";
import pg from "pg";
import { FIND_MESSAGE } from "../src/messages/repository.ts";

const STATUSES = new Set(["PENDING", "SENT", "DELIVERED", "READ", "FAILED", "EXPIRED"]);

/** Created by the bench in its own database only; never part of the service's schema. */
export const BASELINE_FUNCTION = `CREATE OR REPLACE FUNCTION bench_apply_status(
    p_uuid text, p_status message_status, p_at timestamptz, p_payload jsonb) RETURNS text
  LANGUAGE plpgsql AS $$
DECLARE
  v_id bigint;
BEGIN
  INSERT INTO message_events (uuid, status, outcome, occurred_at, source, payload)
  VALUES (p_uuid, p_status, 'applied', p_at, 'webhook', p_payload)
  ON CONFLICT (uuid, status) DO NOTHING
  RETURNING id INTO v_id;
  IF v_id IS NULL THEN
    RETURN 'duplicate';
  END IF;
  UPDATE messages SET status = p_status, updated_at = now(),
         sent_at = CASE WHEN p_status = 'SENT' THEN coalesce(sent_at, p_at) ELSE sent_at END,
         delivered_at = CASE WHEN p_status = 'DELIVERED' THEN coalesce(delivered_at, p_at) ELSE delivered_at END,
         read_at = CASE WHEN p_status = 'READ' THEN coalesce(read_at, p_at) ELSE read_at END,
         failed_at = CASE WHEN p_status = 'FAILED' THEN coalesce(failed_at, p_at) ELSE failed_at END
   WHERE uuid = p_uuid AND status < p_status AND status NOT IN ('READ', 'FAILED', 'EXPIRED');
  IF FOUND THEN
    RETURN 'applied';
  END IF;
  UPDATE message_events SET outcome = 'stale' WHERE id = v_id;
  RETURN 'stale';
END
$$`;

async function main(databaseUrl: string, port: number, secret: string, apiKey: string) {
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 10 });
  const server = createServer((req, res) => {
    const answer = (status: number, body: unknown) => {
      res.writeHead(status, { "content-type": "application/json" });
      res.end(JSON.stringify(body));
    };
    const read = req.method === "GET" ? /^\/v1\/messages\/([\w-]{1,64})$/.exec(req.url ?? "") : null;
    if (read) {
      if (req.headers["x-api-key"] !== apiKey) return answer(401, { error: "unauthorized" });
      // The service's own read (one prepared statement), the rows folded into the message and its events.
      return void pool
        .query({ name: "find", text: FIND_MESSAGE, values: [read[1], "default"] })
        .then(({ rows }) => {
          const [first] = rows;
          if (!first) return answer(404, { error: "not found" });
          const events = rows.map((row) => ({ status: row.eventStatus, outcome: row.outcome, at: row.occurredAt }));
          answer(200, { ...first, eventStatus: undefined, outcome: undefined, events });
        })
        .catch(() => answer(503, { error: "storage unavailable" }));
    }
    if (req.method !== "POST" || req.url !== "/webhooks/betatel") return answer(404, { error: "not found" });
    if (req.headers["x-webhook-secret"] !== secret) return answer(401, { error: "unauthorized" });
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      let item: { uuid?: unknown; status?: unknown; timestamp?: unknown };
      try {
        item = JSON.parse(Buffer.concat(chunks).toString("utf8"));
      } catch {
        return answer(400, { error: "malformed json" });
      }
      const status = typeof item.status === "string" ? item.status.toUpperCase() : "";
      if (typeof item.uuid !== "string" || !STATUSES.has(status)) return answer(400, { error: "invalid" });
      const at = typeof item.timestamp === "string" ? new Date(item.timestamp) : new Date();
      pool
        .query<{ outcome: string }>({
          name: "apply",
          text: "SELECT bench_apply_status($1, $2, $3, $4) AS outcome",
          values: [item.uuid, status, at, item],
        })
        .then(({ rows }) => answer(200, { results: [{ uuid: item.uuid, status, outcome: rows[0]?.outcome }] }))
        .catch(() => answer(503, { error: "storage unavailable" }));
    });
  });
  server.listen(port, "127.0.0.1", () => console.log(`baseline peer listening on ${port}`));
  process.on("SIGTERM", () => server.close(() => pool.end().then(() => process.exit(0))));
}

if (process.argv[2]) await main(process.argv[2], Number(process.argv[3]), process.argv[4] ?? "", process.argv[5] ?? "");
