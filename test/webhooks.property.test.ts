import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Status } from "../src/tracking/status.ts";
import { startTestApp, type TestApp } from "./support/test-app.ts";
import {
  aSentMessage,
  byRank,
  expectedView,
  foldEvents,
  HISTORIES,
  type HistoryEvent,
  postWebhook,
  readMessage,
  timestampsFor,
} from "./support/webhook.ts";

let t: TestApp;
beforeAll(async () => {
  t = await startTestApp();
});
afterAll(() => t.close());

const FORMATS = [
  (at: Date) => at.toISOString(),
  (at: Date) => at.getTime() / 1000,
  (at: Date) => at.getTime(),
] as const;

/** One delivery of an event: which request carries it, and how it is written. */
const delivery = fc.record({
  request: fc.integer({ min: 0, max: 3 }),
  format: fc.integer({ min: 0, max: 2 }),
  lowerCase: fc.boolean(),
});

/** A real history of one message, its events repeated and shuffled, spread over up to 4 concurrent requests. */
const scenario = fc
  .tuple(fc.constantFrom(...HISTORIES), fc.integer({ min: 300, max: 86_400 }))
  .chain(([statuses, ago]) => {
    const history = timestampsFor(statuses, ago);
    return fc
      .array(fc.constantFrom(...history), { maxLength: 4 })
      .chain((repeats) => {
        const all = [...history, ...repeats];
        return fc.tuple(
          fc.shuffledSubarray(all, { minLength: all.length, maxLength: all.length }),
          fc.array(delivery, { minLength: all.length, maxLength: all.length }),
        );
      })
      .map(([events, deliveries]) => ({ history, events, deliveries }));
  });

function item(uuid: string, event: HistoryEvent, how: { format: number; lowerCase: boolean }) {
  const format = FORMATS[how.format] as (at: Date) => string | number;
  const status: string = how.lowerCase ? event.status.toLowerCase() : event.status;
  return { uuid, status, timestamp: format(event.at) };
}

describe("POST /webhooks/betatel, property", () => {
  it("when one message's real history arrives shuffled, repeated and split over concurrent requests, then the row equals rank-order processing", async () => {
    await fc.assert(
      fc.asyncProperty(scenario, async ({ history, events, deliveries }) => {
        const uuid = await aSentMessage(t.app);
        const requests: ReturnType<typeof item>[][] = [[], [], [], []];
        events.forEach((event, i) => {
          const how = deliveries[i] as { request: number; format: number; lowerCase: boolean };
          requests[how.request]?.push(item(uuid, event, how));
        });
        const answers = await Promise.all(
          requests
            .filter((items) => items.length > 0)
            .map((items) => postWebhook(t.app, items.length === 1 ? items[0] : { statuses: items })),
        );
        expect(answers.map((res) => res.status).filter((status) => status !== 200)).toEqual([]);

        const message = await readMessage(t.app, uuid);
        expect(message).toMatchObject(expectedView(foldEvents(byRank(history))));
        const stored = (message.events as { status: Status }[]).map((e) => e.status).sort();
        expect(stored).toEqual(["PENDING", ...new Set(history.map((e) => e.status))].sort());
      }),
      { numRuns: 30 },
    );
  }, 60_000);
});
