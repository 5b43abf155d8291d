import type { Express } from "express";
import request from "supertest";
import { addEndpoint } from "../../src/callbacks/repository.ts";
import { endpointSigningSecret } from "../../src/callbacks/signing-secret.ts";
import { createCallbackWorker } from "../../src/callbacks/worker.ts";
import type { Database } from "../../src/db/database.ts";
import { createLogger } from "../../src/http/logging.ts";
import type { CallbackReceiver } from "./callback-receiver.ts";
import { aPhoneNumber, aUuid } from "./test-app.ts";

/** The CALLBACKS_SECRET the tests' services run with outside production. */
export const TEST_CALLBACKS_SECRET = "development-only-callbacks-secret-not-for-production";

/** A team of the test's own, with one API key: `API_KEYS` for the app and the header to call it with. */
export function aTeam() {
  const team = `team-${aUuid().toLowerCase()}`;
  const key = `key-${aUuid()}`;
  return { team, key, apiKeys: `${team}:${key}`, auth: { authorization: `Bearer ${key}` } };
}

/** Registers `receiver` as the team's endpoint and gives the receiver the secret to verify with. */
export async function registerReceiver(db: Database, team: string, receiver: CallbackReceiver) {
  const endpoint = await addEndpoint(db.pool, { team, url: receiver.url, events: ["message.status"] });
  receiver.secret = endpointSigningSecret(TEST_CALLBACKS_SECRET, endpoint.id, endpoint.secretVersion);
  return endpoint;
}

/** A worker over the test's database with a clock the test moves; it runs only when the test says. */
export function aWorker(
  db: Database,
  options: { clock?: { now: Date }; timeoutMs?: number; allowPrivate?: boolean } = {},
) {
  return createCallbackWorker({
    pool: db.pool,
    logger: createLogger("silent"),
    masterSecret: TEST_CALLBACKS_SECRET,
    allowPrivate: options.allowPrivate ?? true,
    pollMs: 0,
    timeoutMs: options.timeoutMs,
    now: options.clock ? () => options.clock?.now ?? new Date() : undefined,
  });
}

export async function sendAs(app: Express, auth: Record<string, string>): Promise<string> {
  const res = await request(app).post("/v1/messages").set(auth).send({ to: aPhoneNumber(), text: "Your code is 1" });
  if (res.status !== 201) throw new Error(`POST /v1/messages answered ${res.status}: ${JSON.stringify(res.body)}`);
  return res.body.uuid as string;
}
