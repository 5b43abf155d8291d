import { createHmac } from "node:crypto";

/**
 * An endpoint's Standard Webhooks signing secret (`whsec_…`), derived from the service's CALLBACKS_SECRET,
 * the endpoint's id and its secret version. Nothing secret is stored: the table holds only the version, and
 * the CLI prints the secret once when the endpoint is added. Changing CALLBACKS_SECRET changes every secret.
 */
export function endpointSigningSecret(masterSecret: string, endpointId: string, version: number): string {
  const key = createHmac("sha256", masterSecret).update(`callback-endpoint:${endpointId}:${version}`).digest();
  return `whsec_${key.toString("base64")}`;
}
