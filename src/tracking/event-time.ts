import { z } from "zod";

// The times Betatel reports, through the webhook or a delivery record: both readers share the seconds-or-milliseconds
// rule and the plausible range.

// Unix seconds below this, milliseconds above (1e11 s is the year 5138; 1e11 ms is 1973).
const SECONDS_LIMIT = 1e11;
const EARLIEST = Date.UTC(2000, 0, 1);
const LATEST_SKEW_MS = 24 * 60 * 60 * 1000;

/** Unix seconds or milliseconds, as milliseconds. */
export const unixToMillis = (value: number) => (value < SECONDS_LIMIT ? value * 1000 : value);

/** A time an event can have happened at: this century, and not more than a day ahead of our clock. */
export const isPlausibleEventTime = (millis: number, now = Date.now()) =>
  Number.isFinite(millis) && millis >= EARLIEST && millis <= now + LATEST_SKEW_MS;

const isoDateTime = z.iso.datetime({ offset: true });

/**
 * `timestamp` read as milliseconds: ISO 8601 (with a zone), or Unix seconds or milliseconds (number or digit
 * string), within the plausible range. A string is why it cannot be read.
 */
export function eventTimeMillis(value: number | string): number | string {
  const numeric = typeof value === "number" ? value : /^\d{1,16}(\.\d+)?$/.test(value) ? Number(value) : undefined;
  let millis: number;
  if (numeric !== undefined) {
    millis = unixToMillis(numeric);
  } else if (isoDateTime.safeParse(value).success) {
    millis = Date.parse(value as string);
  } else {
    return "must be ISO 8601 with a time zone, or Unix seconds or milliseconds";
  }
  return isPlausibleEventTime(millis) ? millis : "is out of range";
}

/**
 * A delivery record's time as a Date, read by the same rule as the webhook's `timestamp`; null when absent or
 * not readable by that rule (then the time it was received stands in, as for a webhook without one).
 */
export function toDate(value: string | number | null): Date | null {
  if (value === null || value === "") return null;
  const millis = eventTimeMillis(value);
  return typeof millis === "number" ? new Date(millis) : null;
}
