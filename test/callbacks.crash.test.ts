import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Database } from "../src/db/database.ts";
import { type CallbackReceiver, startCallbackReceiver } from "./support/callback-receiver.ts";
import { aTeam, registerReceiver } from "./support/callbacks.ts";
import { type FakeBetatel, startFakeBetatel } from "./support/fake-betatel.ts";
import { openIsolatedDatabase } from "./support/isolated-database.ts";
import { spawnServer } from "./support/spawn-server.ts";
import { aPhoneNumber, TEST_BETATEL } from "./support/test-app.ts";

const owner = aTeam();
let fake: FakeBetatel;
let receiver: CallbackReceiver;
let db: Database;

beforeAll(async () => {
  fake = await startFakeBetatel();
  receiver = await startCallbackReceiver();
  db = await openIsolatedDatabase(1);
});
afterAll(async () => {
  await receiver.close();
  await fake.close();
  await db.close();
});

const env = (pollMs: string) => ({
  DATABASE_URL: db.url ?? "",
  API_KEYS: owner.apiKeys,
  BETATEL_BASE_URL: fake.url,
  BETATEL_API_KEY: TEST_BETATEL.apiKey,
  BETATEL_ACCOUNT_ID: TEST_BETATEL.accountId,
  RECONCILE_INTERVAL_MS: "0",
  CALLBACKS_POLL_MS: pollMs,
});

describe("status callbacks across a crash", () => {
  it("when the process is killed after the status committed and before delivery, then the next instance delivers it", async () => {
    await registerReceiver(db, owner.team, receiver);

    // An instance whose worker never gets to deliver (as if killed right after the commit).
    const first = await spawnServer(env("0"));
    const sent = await fetch(`${first.url}/v1/messages`, {
      method: "POST",
      headers: { "content-type": "application/json", ...owner.auth },
      body: JSON.stringify({ to: aPhoneNumber(), text: "Your code is 1" }),
    });
    const { uuid } = (await sent.json()) as { uuid: string };
    const webhook = await fetch(`${first.url}/webhooks/betatel`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ uuid, status: "DELIVERED" }),
    });
    expect(webhook.status).toBe(200);
    first.kill("SIGKILL");
    await first.exited;
    expect(receiver.requests).toBe(0);

    const second = await spawnServer(env("100"));
    try {
      const [delivered] = await receiver.waitFor(1);
      expect(delivered?.event.data).toMatchObject({ uuid, status: "DELIVERED", sequence: 2, team: owner.team });
    } finally {
      second.kill("SIGTERM");
      await second.exited;
    }
  }, 60_000);
});
