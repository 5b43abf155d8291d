import { FINAL_STATUSES, RANK, type Status } from "../tracking/status.ts";

/**
 * Whether a long-poll waiting for `wanted` can answer with `current`: the status reached or passed it on the
 * delivery path (PENDING < SENT < DELIVERED < READ), or it is final (READ, FAILED, EXPIRED: nothing will follow).
 */
export function hasReached(current: Status, wanted: Status): boolean {
  if (FINAL_STATUSES.has(current)) return true;
  const currentRank = RANK[current];
  const wantedRank = RANK[wanted];
  return currentRank !== undefined && wantedRank !== undefined && currentRank >= wantedRank;
}
