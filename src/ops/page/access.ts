import { createHmac } from "node:crypto";
import type { RequestHandler, Response } from "express";
import { matchesSecret } from "../../http/secrets.ts";

/**
 * Access to the ops page: OPS_TOKEN, typed once into a login form and exchanged for a session cookie.
 * The cookie holds an expiry and an HMAC of it keyed by the token, never the token itself: a copied cookie
 * stops working after SESSION_MS, and changing OPS_TOKEN ends every session. Nothing is stored server-side,
 * so any instance accepts any instance's session. HttpOnly keeps it from scripts; SameSite=Strict keeps it
 * off cross-site requests (no CSRF); Secure in production.
 */
export const SESSION_COOKIE = "ops_session";
const SESSION_MS = 12 * 3_600_000;

export interface OpsAccess {
  /** undefined: the page is open (outside production, no OPS_TOKEN). */
  token: string | undefined;
  /** Production without OPS_TOKEN: locked, nobody gets in. */
  locked: boolean;
  secureCookie: boolean;
}

const sign = (token: string, expires: number) =>
  createHmac("sha256", token).update(`ops-session:${expires}`).digest("base64url");

export function newSession(token: string, now = Date.now()): string {
  const expires = now + SESSION_MS;
  return `${expires}.${sign(token, expires)}`;
}

export function validSession(token: string, cookie: string | undefined, now = Date.now()): boolean {
  const match = /^(\d{1,15})\.([\w-]{43})$/.exec(cookie ?? "");
  if (!match) return false;
  const expires = Number(match[1]);
  return expires > now && matchesSecret(match[2], [sign(token, expires)]);
}

/** One cookie's value from the Cookie header (the service has no cookie parser; this is the only cookie). */
export function readCookie(header: string | undefined, name: string): string | undefined {
  for (const part of (header ?? "").split(";")) {
    const [key, ...value] = part.trim().split("=");
    if (key === name) return value.join("=");
  }
  return undefined;
}

export function setSessionCookie(res: Response, access: OpsAccess, value: string, maxAgeMs = SESSION_MS): void {
  res.cookie(SESSION_COOKIE, value, {
    httpOnly: true,
    sameSite: "strict",
    secure: access.secureCookie,
    path: "/ops",
    maxAge: maxAgeMs,
  });
}

/** Lets a request through when the page is open or it carries a valid session; else `denied` answers it. */
export function requireOpsSession(access: OpsAccess, denied: RequestHandler): RequestHandler {
  return (req, res, next) => {
    if (access.locked) return denied(req, res, next);
    if (access.token === undefined) return next();
    if (validSession(access.token, readCookie(req.headers.cookie, SESSION_COOKIE))) return next();
    return denied(req, res, next);
  };
}

export const tokenMatches = (access: OpsAccess, presented: unknown) =>
  !access.locked &&
  access.token !== undefined &&
  typeof presented === "string" &&
  matchesSecret(presented, [access.token]);
