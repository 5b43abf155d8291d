// `npm run callbacks -- <command>`: manage a team's status-callback endpoints and replay deliveries.
import { parseArgs } from "node:util";
import { z } from "zod";
import { ConfigError, loadToolConfig } from "../config.ts";
import { openDatabase } from "../db/database.ts";
import { applyMigrations } from "../db/migrate.ts";
import { toolFailureMessage } from "../db/tool-failure.ts";
import { teamNameSchema } from "../keys/static-keys.ts";
import {
  addEndpoint,
  CALLBACK_EVENT_TYPES,
  type CallbackEventType,
  listEndpoints,
  removeEndpoint,
  replayDeliveries,
  setEndpointEnabled,
} from "./repository.ts";
import { endpointSigningSecret } from "./signing-secret.ts";
import { CallbackTargetRefused, checkCallbackUrl } from "./target-guard.ts";

const USAGE = `Usage: npm run callbacks -- <command>
  add --team <team> --url <url> [--events message.status,verification.status]
                         register an endpoint; prints its signing secret once
  list [--team <team>]   endpoints with their state
  disable <id> | enable <id> | remove <id>
  replay --team <team> --since <2026-11-28 | 2026-11-28T09:00:00Z>
                         send the team's events since that time again (same webhook-id)`;

class UsageError extends Error {}

function required(value: string | undefined, name: string): string {
  if (!value) throw new UsageError(`--${name} is required`);
  return value;
}

/** `--team`, by the rule for team names everywhere (API_KEYS, `npm run keys`). */
function teamOption(value: string | undefined): string {
  const team = teamNameSchema.safeParse(required(value, "team"));
  if (!team.success) throw new UsageError(`--team ${team.error.issues[0]?.message}`);
  return team.data;
}

// Strict ISO 8601 only: new Date() reads "1" as 2001 and rolls 2026-02-30 over into March.
const sinceSchema = z.union([z.iso.datetime({ offset: true }), z.iso.date()]);

/** `--since`: a date (midnight UTC) or a date-time with its offset, not in the future. */
function sinceOption(value: string | undefined): Date {
  const parsed = sinceSchema.safeParse(required(value, "since"));
  if (!parsed.success) {
    throw new UsageError(
      "--since must be an ISO 8601 date or date-time with Z or an offset, e.g. 2026-11-28 or 2026-11-28T09:00:00Z",
    );
  }
  const since = new Date(parsed.data);
  if (since.getTime() > Date.now()) throw new UsageError("--since must not be in the future");
  return since;
}

function parseEvents(value: string | undefined): CallbackEventType[] {
  if (!value) return [...CALLBACK_EVENT_TYPES];
  const events = value.split(",").map((event) => event.trim());
  const unknown = events.filter((event) => !(CALLBACK_EVENT_TYPES as readonly string[]).includes(event));
  if (unknown.length > 0) throw new UsageError(`unknown event type ${unknown.join(", ")}`);
  return events as CallbackEventType[];
}

async function main(argv: string[]) {
  const { positionals, values } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      team: { type: "string" },
      url: { type: "string" },
      events: { type: "string" },
      since: { type: "string" },
    },
  });
  const [command, id] = positionals;
  if (!command) throw new UsageError("a command is required");
  const config = loadToolConfig();
  const db = await openDatabase({ url: config.DATABASE_URL, dataDir: config.DATA_DIR, poolSize: 1 });
  try {
    await applyMigrations(db.pool);
    switch (command) {
      case "add": {
        const secret = config.CALLBACKS_SECRET;
        if (!secret) throw new UsageError("CALLBACKS_SECRET is unset: set it (as the service has it) to add endpoints");
        const team = teamOption(values.team);
        const url = checkCallbackUrl(required(values.url, "url"), config.CALLBACKS_ALLOW_PRIVATE).toString();
        const endpoint = await addEndpoint(db.pool, { team, url, events: parseEvents(values.events) });
        console.log(`endpoint ${endpoint.id} for team ${team}: ${url} (${endpoint.events.join(", ")})`);
        console.log(`signing secret (shown once; verify webhook-signature with it):`);
        console.log(endpointSigningSecret(secret, endpoint.id, endpoint.secretVersion));
        return;
      }
      case "list": {
        const endpoints = await listEndpoints(db.pool, values.team === undefined ? undefined : teamOption(values.team));
        if (endpoints.length === 0) console.log("no endpoints");
        for (const e of endpoints) {
          const state = e.enabled ? "enabled" : `disabled (${e.disabledReason ?? "no reason"})`;
          const failing = e.failingSince ? `, failing since ${e.failingSince.toISOString()}` : "";
          console.log(`${e.id}  team=${e.team}  ${e.url}  [${e.events.join(",")}]  ${state}${failing}`);
        }
        return;
      }
      case "disable":
      case "enable": {
        const found = await setEndpointEnabled(db.pool, required(id, "id"), command === "enable");
        if (!found) throw new UsageError(`no endpoint ${id}`);
        console.log(`endpoint ${id} ${command}d`);
        return;
      }
      case "remove": {
        if (!(await removeEndpoint(db.pool, required(id, "id")))) throw new UsageError(`no endpoint ${id}`);
        console.log(`endpoint ${id} removed with its deliveries`);
        return;
      }
      case "replay": {
        const team = teamOption(values.team);
        const since = sinceOption(values.since);
        const count = await replayDeliveries(db.pool, team, since);
        console.log(`${count} deliveries of team ${team} since ${since.toISOString()} queued again`);
        return;
      }
      default:
        throw new UsageError(`unknown command ${command}`);
    }
  } finally {
    await db.close();
  }
}

try {
  await main(process.argv.slice(2));
} catch (error) {
  if (error instanceof CallbackTargetRefused) console.error(`refused: the URL ${error.message}`);
  else if (error instanceof UsageError || error instanceof TypeError) console.error(`${error.message}\n\n${USAGE}`);
  else console.error(toolFailureMessage(error, [ConfigError]));
  process.exitCode = 1;
}
