/** Why a call to Betatel failed; each kind maps to one problem code of contract section 3. */
export type BetatelFailure = "rejected" | "auth_failed" | "payment_required" | "unavailable" | "timeout";

export class BetatelError extends Error {
  override name = "BetatelError";
  constructor(
    readonly failure: BetatelFailure,
    message: string,
    /** Betatel's HTTP status, when it answered. */
    readonly status?: number,
    /** Betatel's reason, already trimmed and free of the OTP text. */
    readonly reason?: string,
    /** How long Betatel asked us to wait (`Retry-After`), when it said so. */
    readonly retryAfterMs?: number,
  ) {
    super(message);
  }
}
