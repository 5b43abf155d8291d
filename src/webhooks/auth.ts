import type { Request } from "express";
import { Webhook } from "standardwebhooks";
import { unauthorized } from "../http/problem.ts";
import { bearerToken, matchesSecret } from "../http/secrets.ts";

/** The shared secret from `x-webhook-secret`, `Authorization: Bearer` or `?token=`. */
function presentedSecret(req: Request): string | undefined {
  const header = req.headers["x-webhook-secret"];
  if (typeof header === "string") return header;
  const bearer = bearerToken(req.headers.authorization);
  if (bearer) return bearer;
  const token = req.query.token;
  return typeof token === "string" ? token : undefined;
}

/** Checks the shared secret in constant time, before the body is read. Throws 401. */
export function checkWebhookSecret(secret: string | undefined): (req: Request) => void {
  return (req) => {
    if (secret && !matchesSecret(presentedSecret(req), [secret])) {
      throw unauthorized("Present the webhook secret as x-webhook-secret, a bearer token or ?token=.");
    }
  };
}

/**
 * When a signing secret is set, checks the Standard Webhooks signature over the raw body; the library also
 * enforces the 5-minute timestamp window. Throws 401.
 */
export function checkWebhookSignature(signingSecret: string | undefined): (req: Request, rawBody: Buffer) => void {
  const verifier = signingSecret ? new Webhook(signingSecret) : undefined;
  return (req, rawBody) => {
    if (!verifier) return;
    try {
      // jsonParse: false, so a correctly signed body that is not JSON is the route's 400, not a 401 here.
      verifier.verify(
        rawBody,
        {
          "webhook-id": req.get("webhook-id") ?? "",
          "webhook-timestamp": req.get("webhook-timestamp") ?? "",
          "webhook-signature": req.get("webhook-signature") ?? "",
        },
        { jsonParse: false },
      );
    } catch {
      throw unauthorized(
        "Missing or invalid Standard Webhooks signature (webhook-id, webhook-timestamp, webhook-signature).",
      );
    }
  };
}
