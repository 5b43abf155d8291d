/**
 * Outcomes that change what a reader of the message sees: `applied` moves the status, `stale` back-fills a
 * timestamp, `rejected` adds an event to its history. `duplicate` changes nothing; `buffered` has no message yet.
 */
const VISIBLE = new Set(["applied", "stale", "rejected"]);

/**
 * The uuids to announce after a batch of status events was applied: those with a visible outcome, and those
 * whose buffered statuses were settled on the way (`settled`).
 */
export function changedUuids(
  results: Iterable<{ uuid: string | null; outcome: string | undefined }>,
  settled: Iterable<string> = [],
): string[] {
  const uuids = new Set(settled);
  for (const { uuid, outcome } of results) if (uuid && outcome && VISIBLE.has(outcome)) uuids.add(uuid);
  return [...uuids];
}
