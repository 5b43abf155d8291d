import { parsePhoneNumberFromString } from "libphonenumber-js/max";
import type { Logger } from "pino";
import type { Database } from "../db/database.ts";
import { withStorage } from "../db/errors.ts";
import { AppError } from "../http/problem.ts";
import { maskPhone } from "../phone/phone.ts";
import type { RecipientLimit } from "./limits-config.ts";
import { reserveRecipientSend } from "./recipient-limit.ts";

/** Why a send was refused before Betatel was called (a metrics label). */
export type RefusalReason = "recipient" | "key" | "country";

export interface SendGuardOptions {
  db: Database;
  logger: Logger;
  recipientLimits: readonly RecipientLimit[];
  /** Undefined: every country. */
  allowedCountries: ReadonlySet<string> | undefined;
  onRefused?: (reason: RefusalReason, team: string) => void;
}

export interface SendGuard {
  /** Runs just before Betatel is called; throws the refusal (422 or 429) when a limit says no. */
  check(send: { to: string; team: string }): Promise<void>;
  /** Whether `check` queries the database (then it also proves the database is up before anything is sent). */
  usesDatabase: boolean;
}

/**
 * The abuse limits on a send: the recipient's country, then its send count (which also counts this send when
 * allowed). A refusal is logged with the number masked and counted by reason.
 */
export function createSendGuard(options: SendGuardOptions): SendGuard {
  const { db, logger, recipientLimits, allowedCountries } = options;
  const refuse = (reason: RefusalReason, send: { to: string; team: string }, error: AppError) => {
    options.onRefused?.(reason, send.team);
    logger.warn({ reason, team: send.team, to: maskPhone(send.to), code: error.code }, "send refused by a limit");
    return error;
  };
  const check = async (send: { to: string; team: string }) => {
    if (allowedCountries) {
      const country = parsePhoneNumberFromString(`+${send.to}`)?.country;
      if (!country || !allowedCountries.has(country)) {
        throw refuse(
          "country",
          send,
          new AppError({
            code: "country_not_allowed",
            detail: `This service sends only to numbers of ${[...allowedCountries].join(", ")}.`,
          }),
        );
      }
    }
    if (recipientLimits.length === 0) return;
    const reservation = await withStorage(() => reserveRecipientSend(db, recipientLimits, send));
    if (reservation.allowed) return;
    throw refuse(
      "recipient",
      send,
      new AppError({
        code: "recipient_rate_limited",
        detail: `At most ${reservation.limit.label.replace("/", " per ")} to one number; retry after the time in Retry-After.`,
        headers: { "Retry-After": String(reservation.retryAfterSeconds) },
      }),
    );
  };
  return { check, usesDatabase: recipientLimits.length > 0 };
}
