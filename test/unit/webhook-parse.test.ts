import { describe, expect, it } from "vitest";
import { readValidItem, statusItemSchema } from "../../src/webhooks/parse.ts";

const uuid = "01JV5V54KPYK9GB29265EQRZ2P";
const ITEMS: unknown[] = [
  { uuid, status: "SENT" },
  { uuid, status: "delivered", timestamp: 1795000000 },
  { uuid, status: "Read", timestamp: "1795000000123" },
  { uuid, status: "READ", timestamp: "1795000000.5" },
  { uuid, status: "FAILED", timestamp: "2026-11-27T10:00:00+01:00", error: { code: 131026, message: "undeliverable" } },
  { uuid, status: "FAILED", error: { code: "x", title: "t", details: { a: 1 } }, wam_id: "wamid.1", to: "+387" },
  { uuid, status: "FAILED", error: "plain reason", wam_id: null, to: null, timestamp: null, extra: [1, 2] },
  { uuid, status: "SENT", timestamp: "2026-11-27T10:00:00" },
  { uuid, status: "SENT", timestamp: 12 },
  { uuid, status: "SENT", timestamp: 4102444800 },
  { uuid, status: "SENT", timestamp: true },
  { uuid, status: "SENT", timestamp: "x".repeat(65) },
  { uuid, status: "SENDING" },
  { uuid, status: "S".repeat(33) },
  { uuid: "has space", status: "SENT" },
  { uuid: "u".repeat(256), status: "SENT" },
  { uuid: 7, status: "SENT" },
  { status: "SENT" },
  { uuid, status: "FAILED", error: { code: null } },
  { uuid, status: "FAILED", error: { message: "m".repeat(1001) } },
  { uuid, status: "FAILED", error: ["a"] },
  { uuid, status: "FAILED", error: 5 },
  { uuid, status: "SENT", wam_id: "w".repeat(256) },
  { uuid, status: "SENT", to: 38761444555 },
  [uuid, "SENT"],
  null,
  "SENT",
];

describe("the webhook item's hand-written reading", () => {
  it.each(ITEMS.map((item) => [JSON.stringify(item)?.slice(0, 80), item]))(
    "when the item is %s, then it accepts exactly what the schema accepts, read to the same values",
    (_label, item) => {
      const schema = statusItemSchema.safeParse(item);
      const fast = readValidItem(item);
      if (!schema.success) {
        expect(fast).toBeUndefined();
        return;
      }
      expect(fast).toEqual({
        uuid: schema.data.uuid,
        status: schema.data.status,
        occurredAt: schema.data.timestamp ?? null,
        wamId: schema.data.wam_id ?? null,
      });
    },
  );
});
