import type { RequestHandler } from "express";
import { withStorage } from "../db/errors.ts";
import type { KeyResolver } from "../keys/resolver.ts";
import { DEFAULT_TEAM } from "../keys/static-keys.ts";
import { API_REALM, unauthorized } from "./problem.ts";
import { bearerToken, secretId } from "./secrets.ts";

declare module "express-serve-static-core" {
  interface Locals {
    /** Which API key called (a hash prefix), or "open" when API_KEYS is unset. */
    apiKeyId: string;
    /** The key itself, kept in memory only (it keys request fingerprints). */
    apiKey: string;
    /**
     * The caller's team: every message it sends is stamped with it and every read is limited to it. Set by
     * `requireApiKey` (`default` when /v1 is open).
     */
    team: string;
  }
}

const noValidKey = () =>
  unauthorized("Present a valid API key as `Authorization: Bearer <key>` or `x-api-key`.", API_REALM);

/**
 * `/v1/*` guard: a key from API_KEYS or the api_keys table, in `Authorization: Bearer` or `x-api-key`. Sets
 * `res.locals.team`. Open (team `default`) only when no key is configured anywhere.
 */
export function requireApiKey(keys: KeyResolver): RequestHandler {
  return async (req, res, next) => {
    const header = typeof req.headers["x-api-key"] === "string" ? req.headers["x-api-key"] : undefined;
    const bearer = bearerToken(req.headers.authorization);
    // Two different keys in one request: which one was meant is a guess, and a guess must not pick a team.
    if (bearer !== undefined && header !== undefined && bearer !== header) return next(noValidKey());
    const presented = bearer ?? header;
    const caller = presented ? await withStorage(() => keys.resolve(presented)) : undefined;
    if (presented && caller) {
      res.locals.apiKeyId = secretId(presented);
      res.locals.apiKey = presented;
      res.locals.team = caller.team;
      return next();
    }
    // No valid key: fine only while no key is configured anywhere (development).
    if (!(await withStorage(() => keys.isOpen()))) return next(noValidKey());
    res.locals.apiKeyId = "open";
    res.locals.apiKey = "";
    res.locals.team = DEFAULT_TEAM;
    next();
  };
}
