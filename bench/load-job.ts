/** What the runner asks of the load generator (bench/load.ts), and what it answers. */

export interface LoadJob {
  targets: string[];
  method: "GET" | "POST";
  headers: Record<string, string>;
  /** Request paths (and bodies for POST), sent in order; each one once unless `cycle`. */
  requests: Array<{ path: string; body?: string }>;
  connections: number;
  durationSeconds: number;
  /** Start over at the end of the list (reads); otherwise stop when every request was sent. */
  cycle: boolean;
}

/** Per request: 0 never sent, 1 sent but not answered, 2 answered 2xx, 3 answered otherwise. */
export const SENT = 1;
export const ACKED = 2;
export const REFUSED = 3;

export interface LoadResult {
  elapsedSeconds: number;
  /** CPU time the load generator itself used (user + system), to see whether it, not the service, was the limit. */
  cpuSeconds: number;
  answered: number;
  non2xx: number;
  errors: number;
  timeouts: number;
  latencyMs: { p50: number; p90: number; p99: number; max: number; mean: number };
  /** Base64 of the per-request state bytes (see SENT/ACKED/REFUSED). */
  states: string;
}
