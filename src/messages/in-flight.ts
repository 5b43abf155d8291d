import { shuttingDown } from "../http/problem.ts";

/** One send in progress, as shutdown reports it if it has to abandon it (the number is masked). */
export interface SendInFlight {
  to: string;
  idempotencyKey: string | undefined;
  startedAt: Date;
  /** Set once Betatel accepted the OTP: from then on, only storing it is left. */
  uuid?: string;
}

/**
 * The sends in progress in this process, so that shutdown can wait for them: a send cut between Betatel's
 * answer and storing it is an OTP that went out untracked, its Idempotency-Key claimed without an answer.
 */
export function createInFlightSends() {
  const running = new Set<SendInFlight>();
  const waiters = new Set<() => void>();
  let closing = false;

  return {
    /** Runs one send; once shutdown began, a new one is refused (503 `shutting_down`, retry elsewhere). */
    async run<T>(entry: SendInFlight, work: () => Promise<T>): Promise<T> {
      if (closing) {
        throw shuttingDown("This instance is shutting down and takes no new sends; retry.");
      }
      running.add(entry);
      try {
        return await work();
      } finally {
        running.delete(entry);
        if (running.size === 0) for (const wake of waiters) wake();
      }
    },

    get size() {
      return running.size;
    },

    /** Refuses new sends and waits up to `timeoutMs` for those in flight; returns the ones still running. */
    async drain(timeoutMs: number): Promise<SendInFlight[]> {
      closing = true;
      if (running.size > 0) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(done, timeoutMs);
          function done() {
            clearTimeout(timer);
            waiters.delete(done);
            resolve();
          }
          waiters.add(done);
        });
      }
      return [...running];
    },
  };
}

export type InFlightSends = ReturnType<typeof createInFlightSends>;
