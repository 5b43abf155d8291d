import type { RequestHandler } from "express";
import { type IncrementResponse, ipKeyGenerator, rateLimit, type Store } from "express-rate-limit";
import type { Database } from "../db/database.ts";
import { withStorage } from "../db/errors.ts";
import { AppError } from "../http/problem.ts";
import { decrementRateLimitCounter, deleteRateLimitCounter, incrementRateLimitCounter } from "./repository.ts";

/**
 * express-rate-limit's counters in Postgres, so every instance counts the same hits: one atomic upsert per
 * request (`incrementRateLimitCounter`), no read-then-write race between instances. Written here rather than
 * taken from npm: the Postgres stores there are unmaintained or bring their own pinned `pg`, pool and runtime
 * schema migrations outside Prisma's, and cannot share the embedded database's single connection.
 */
export class PostgresRateLimitStore implements Store {
  localKeys = false;
  prefix = "send:";
  private windowMs = 60_000;

  constructor(private readonly db: Database) {}

  init(options: { windowMs: number }): void {
    this.windowMs = options.windowMs;
  }

  async increment(key: string): Promise<IncrementResponse> {
    const { hits, resetAt } = await withStorage(() =>
      incrementRateLimitCounter(this.db.pool, this.prefix + key, this.windowMs),
    );
    return { totalHits: hits, resetTime: resetAt };
  }

  async decrement(key: string): Promise<void> {
    await decrementRateLimitCounter(this.db.pool, this.prefix + key);
  }

  async resetKey(key: string): Promise<void> {
    await deleteRateLimitCounter(this.db.pool, this.prefix + key);
  }
}

/**
 * Rate limit for `POST /v1/messages`, per API key (`res.locals.apiKeyId`, so it runs after `requireApiKey`),
 * counted over all instances. With /v1 open every caller is "open": then the client address is the key.
 * `perMinute` 0 turns the limit off. `onRefused` counts the refusal (metrics).
 */
export function sendRateLimit(
  db: Database,
  perMinute: number,
  onRefused: (team: string) => void = () => {},
): RequestHandler {
  if (perMinute === 0) return (_req, _res, next) => next();
  return rateLimit({
    windowMs: 60_000,
    limit: perMinute,
    standardHeaders: "draft-7",
    legacyHeaders: false,
    store: new PostgresRateLimitStore(db),
    keyGenerator: (req, res) =>
      res.locals.apiKeyId && res.locals.apiKeyId !== "open"
        ? `key:${res.locals.apiKeyId}`
        : `ip:${ipKeyGenerator(req.socket.remoteAddress ?? "unknown")}`,
    // Retry-After is set by the library before the handler runs (standardHeaders is on).
    handler: (_req, res, next) => {
      onRefused(res.locals.team);
      next(
        new AppError({
          code: "rate_limited",
          detail: `At most ${perMinute} messages per minute per API key; retry after the time in Retry-After.`,
        }),
      );
    },
  });
}
