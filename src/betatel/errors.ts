/** Why a call to Betatel failed; each kind maps to one problem code of the send API. */
export type BetatelFailure = "rejected" | "auth_failed" | "payment_required" | "unavailable" | "timeout";

export interface BetatelErrorDetails {
  /** Betatel's HTTP status, when it answered. */
  status?: number;
  /** Betatel's reason, already trimmed and free of the OTP text. */
  reason?: string;
  /** How long Betatel asked us to wait (`Retry-After`), when it said so. */
  retryAfterMs?: number;
  /** Set when the request may have left although no status came back (a connection cut mid-call). */
  mayHaveSent?: boolean;
}

export class BetatelError extends Error {
  override name = "BetatelError";
  readonly status?: number;
  readonly reason?: string;
  readonly retryAfterMs?: number;
  /**
   * Whether Betatel may have received the request and sent the OTP anyway: after a timeout, a 5xx, a 2xx we
   * could not read, or a connection cut after the request left. Then nobody may send it again under the same key.
   */
  readonly mayHaveSent: boolean;

  constructor(
    readonly failure: BetatelFailure,
    message: string,
    details: BetatelErrorDetails = {},
  ) {
    super(message);
    const { status, mayHaveSent } = details;
    this.status = status;
    this.reason = details.reason;
    this.retryAfterMs = details.retryAfterMs;
    // A 5xx (a gateway's 502/504 included) proves nothing: Betatel, or the service behind the gateway, may
    // have sent the OTP before failing to answer.
    this.mayHaveSent =
      mayHaveSent ??
      (failure === "timeout" || (status !== undefined && ((status >= 200 && status < 300) || status >= 500)));
  }
}
