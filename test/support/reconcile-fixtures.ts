import type { Express } from "express";
import request from "supertest";
import { expect } from "vitest";
import type { Database } from "../../src/db/database.ts";
import { type FakeBetatel, type RecordedRequest, type Reply, success } from "./fake-betatel.ts";
import { aPhoneNumber } from "./test-app.ts";

export const MINUTE = 60_000;
export const HOUR = 60 * MINUTE;
export const DAY = 24 * HOUR;

/**
 * A clock far in the past, different for each test. Jobs in tests run at such a clock with thresholds of
 * hours, so they only see rows a test dated around it: never another test's or another file's rows.
 */
export function anAncientClock(fromYear: number, years: number): Date {
  const start = Date.UTC(fromYear, 0, 1);
  const days = Math.floor(Math.random() * years * 365);
  return new Date(start + days * DAY);
}

/** Sends an OTP through the API (the fake Betatel accepts it) and returns its uuid. */
export async function sendOtp(app: Express, text = "Your code is 482910"): Promise<string> {
  const res = await request(app).post("/v1/messages").send({ to: aPhoneNumber(), text });
  expect(res.status).toBe(201);
  return res.body.uuid as string;
}

/** Moves a message's creation into the past, as if it had been sent then. */
export async function backdate(db: Database, uuid: string, createdAt: Date): Promise<void> {
  await db.pool.query("UPDATE messages SET created_at = $2 WHERE uuid = $1", [uuid, createdAt]);
}

const WDR_PATH = /^\/api\/v1\/connect-hub\/whatsapp\/([^/]+)\/wdr$/;

/** The uuid a request asked the WDR of, or undefined for any other request. */
export const wdrUuid = (req: RecordedRequest) => WDR_PATH.exec(req.url)?.[1];

/**
 * Makes the fake answer WDR requests with `answer(uuid)` (default 404) and OTP sends as Betatel does.
 */
export function serveWdr(betatel: FakeBetatel, answer: (uuid: string) => Reply | undefined): void {
  betatel.always((req) => {
    const uuid = wdrUuid(req);
    if (uuid === undefined) return success(req);
    return answer(decodeURIComponent(uuid)) ?? { status: 404, body: { message: "not found" } };
  });
}

/** A WDR as Betatel answers it; `text` is the OTP, which the service must never keep. */
export function aDeliveryRecord(uuid: string, fields: Record<string, unknown> = {}) {
  return {
    uuid,
    wam_id: `wamid.${uuid}`,
    to: "38761444555",
    text: "Your code is 482910",
    status: "Delivered",
    timestamp: "2026-11-27T10:00:00.000Z",
    delivery_timestamp: "2026-11-27T10:00:03.000Z",
    delivery_time: 3,
    webhook_delivered: false,
    ...fields,
  };
}

/** WDR requests the fake received for these uuids, in total. */
export const wdrRequestCount = (betatel: FakeBetatel, uuids: string[]) =>
  wdrRequestsPerUuid(betatel, uuids).reduce((sum, n) => sum + n, 0);

/** WDR requests the fake received for these uuids, per uuid. */
export function wdrRequestsPerUuid(betatel: FakeBetatel, uuids: string[]): number[] {
  return uuids.map((uuid) => betatel.requests.filter((req) => wdrUuid(req) === uuid).length);
}
