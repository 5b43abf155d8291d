import type { RequestHandler } from "express";
import { AppError } from "./problem.ts";
import { bearerToken, matchesSecret, secretId } from "./secrets.ts";

declare module "express-serve-static-core" {
  interface Locals {
    /** Which API key called (a hash prefix), or "open" when API_KEYS is unset. */
    apiKeyId: string;
    /** The key itself, kept in memory only (it keys request fingerprints). */
    apiKey: string;
  }
}

const unauthorized = () =>
  new AppError(
    401,
    "unauthorized",
    "Unauthorized",
    "Present a valid API key as `Authorization: Bearer <key>` or `x-api-key`.",
    {},
    {
      "WWW-Authenticate": 'Bearer realm="whatsapp-otp-tracker"',
    },
  );

/** `/v1/*` guard: one of API_KEYS in `Authorization: Bearer` or `x-api-key`. Open when no keys are set. */
export function requireApiKey(keys: readonly string[]): RequestHandler {
  return (req, res, next) => {
    if (keys.length === 0) {
      res.locals.apiKeyId = "open";
      res.locals.apiKey = "";
      return next();
    }
    const header = req.headers["x-api-key"];
    const presented = bearerToken(req.headers.authorization) ?? (typeof header === "string" ? header : undefined);
    if (!presented || !matchesSecret(presented, keys)) return next(unauthorized());
    res.locals.apiKeyId = secretId(presented);
    res.locals.apiKey = presented;
    next();
  };
}
