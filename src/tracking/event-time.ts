// The times Betatel reports, whether through the webhook or a delivery record, read by the same rules.

// Unix seconds below this, milliseconds above (1e11 s is the year 5138; 1e11 ms is 1973).
const SECONDS_LIMIT = 1e11;
const EARLIEST = Date.UTC(2000, 0, 1);
const LATEST_SKEW_MS = 24 * 60 * 60 * 1000;

/** Unix seconds or milliseconds, as milliseconds. */
export const unixToMillis = (value: number) => (value < SECONDS_LIMIT ? value * 1000 : value);

/** A time an event can have happened at: this century, and not more than a day ahead of our clock. */
export const isPlausibleEventTime = (millis: number, now = Date.now()) =>
  Number.isFinite(millis) && millis >= EARLIEST && millis <= now + LATEST_SKEW_MS;
