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
    /**
     * Whether Betatel may have received the request and sent the OTP anyway: after a timeout, a 2xx we could
     * not read, or a connection cut after the request left. Then nobody may send it again under the same key.
     */
    readonly mayHaveSent: boolean = failure === "timeout" || (status !== undefined && status >= 200 && status < 300),
  ) {
    super(message);
  }
}
