import { createHmac, timingSafeEqual } from "node:crypto";
import type { RequestHandler } from "express";
import { API_REALM, unauthorized } from "../http/problem.ts";

declare module "express-serve-static-core" {
  interface Locals {
    /** Set when the request reads its message with a watch token instead of an API key. */
    watchToken?: boolean;
  }
}

/** How long a watch token reads its message. */
export const WATCH_TOKEN_TTL_MS = 15 * 60_000;

/** 18 bytes of HMAC-SHA256 (144 bits): 24 base64url characters without padding. */
const MAC_BYTES = 18;
const TOKEN = /^([0-9a-z]{1,10})\.([A-Za-z0-9_-]{24})$/;

export type TokenCheck = "valid" | "expired" | "invalid";

export interface WatchAccess {
  /** A token that reads `uuid` (stream and long-poll) for the next 15 minutes. */
  issue(uuid: string): string;
  check(token: string, uuid: string): TokenCheck;
  /** The stream URL with a fresh token: absolute under PUBLIC_URL, else relative to the service. */
  watchUrl(uuid: string): string;
}

export interface WatchAccessOptions {
  secret: string;
  publicUrl?: string;
  ttlMs?: number;
  now?: () => number;
}

/**
 * Watch tokens: `<expiry, unix seconds in base 36>.<HMAC of uuid and expiry, base64url>`. The uuid is in the
 * URL path, not the token, and the signature covers it: a token of one message reads no other. Stateless (no
 * table): the service's key signs and checks them, so they survive restarts and work on every instance.
 */
export function createWatchAccess(options: WatchAccessOptions): WatchAccess {
  const ttlMs = options.ttlMs ?? WATCH_TOKEN_TTL_MS;
  const now = options.now ?? Date.now;
  const base = options.publicUrl?.replace(/\/+$/, "") ?? "";
  const mac = (uuid: string, expires: string) =>
    createHmac("sha256", options.secret).update(`watch\n${uuid}\n${expires}`).digest().subarray(0, MAC_BYTES);

  const issue = (uuid: string) => {
    const expires = Math.ceil((now() + ttlMs) / 1000).toString(36);
    return `${expires}.${mac(uuid, expires).toString("base64url")}`;
  };
  return {
    issue,
    check(token, uuid) {
      const [, expires = "", signature = ""] = TOKEN.exec(token) ?? [];
      if (!signature) return "invalid";
      // Both sides are MAC_BYTES long (the pattern fixes the length), as timingSafeEqual requires.
      if (!timingSafeEqual(Buffer.from(signature, "base64url"), mac(uuid, expires))) return "invalid";
      return Number.parseInt(expires, 36) * 1000 > now() ? "valid" : "expired";
    },
    watchUrl: (uuid) => `${base}/v1/messages/${encodeURIComponent(uuid)}/stream?watch=${issue(uuid)}`,
  };
}

const refused = (code: "watch_token_invalid" | "watch_token_expired", detail: string) =>
  unauthorized(detail, API_REALM, code);

/**
 * Guards the stream (`route` "stream") or the long-poll (`route` "long-poll") of `:uuid`: with `?watch=` the
 * token must be valid for that uuid, and the API key is not asked for; without it, `apiKey` decides.
 * A token reads nothing else: not the plain GET, not the list, not a send, not another uuid.
 */
export function apiKeyOrWatchToken(
  access: WatchAccess,
  route: "stream" | "long-poll",
  apiKey: RequestHandler,
): RequestHandler<{ uuid: string }> {
  return (req, res, next) => {
    const token = req.query.watch;
    const longPollAsked = req.query.waitFor !== undefined || req.query.timeout !== undefined;
    // Without a token, or on the plain GET (which a token does not open), the API key decides.
    if (token === undefined || (route === "long-poll" && !longPollAsked)) return apiKey(req, res, next);
    if (typeof token !== "string") return next(refused("watch_token_invalid", "Give one `watch` token."));
    const check = access.check(token, req.params.uuid);
    if (check === "expired") {
      return next(refused("watch_token_expired", "This watch token has expired; get a fresh watchUrl."));
    }
    if (check === "invalid") {
      return next(refused("watch_token_invalid", "This watch token is not valid for this message."));
    }
    res.locals.watchToken = true;
    // For the per-key watcher cap, all tokens of one message count as one caller (a leaked link holds that many).
    res.locals.apiKeyId = `watch:${req.params.uuid}`;
    res.locals.apiKey = "";
    next();
  };
}
