// `npm run keys -- create --team growth --name signup | list | revoke <id>`: manage the stored API keys.
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { ConfigError, loadToolConfig } from "../config.ts";
import { type Database, openDatabase } from "../db/database.ts";
import { applyMigrations } from "../db/migrate.ts";
import { toolFailureMessage } from "../db/tool-failure.ts";
import { createStoredKey, listStoredKeys, revokeStoredKey } from "./repository.ts";
import { teamNameSchema } from "./static-keys.ts";

const USAGE = `usage: npm run keys -- create --team <team> --name <name>
       npm run keys -- list
       npm run keys -- revoke <id>`;

export class UsageError extends Error {}

/** Runs one command and returns what to print. */
export async function runKeysCommand(db: Database, args: string[]): Promise<string> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { team: { type: "string" }, name: { type: "string" } },
  });
  const [command, ...rest] = positionals;
  if (command === "create" && rest.length === 0) {
    const team = teamNameSchema.safeParse(values.team ?? "");
    const name = (values.name ?? "").trim();
    if (!team.success) throw new UsageError("--team: 1 to 64 letters, digits, dots, dashes or underscores");
    if (!name || name.length > 200) throw new UsageError("--name: a label for the key (1 to 200 characters)");
    const { key, record } = await createStoredKey(db, { team: team.data, name });
    return [
      `created key ${record.id} for team ${record.team} (${record.name})`,
      "",
      `  ${key}`,
      "",
      "Store it now: it is shown only this once (the service keeps only a hash).",
    ].join("\n");
  }
  if (command === "list" && rest.length === 0) {
    const keys = await listStoredKeys(db);
    const rows = keys.map((key) => [
      String(key.id),
      key.team,
      key.name,
      `${key.prefix}…`,
      key.createdAt.toISOString(),
      key.lastUsedAt?.toISOString() ?? "never",
      key.revokedAt ? `revoked ${key.revokedAt.toISOString()}` : "active",
    ]);
    return table([["id", "team", "name", "prefix", "created", "last used", "state"], ...rows]);
  }
  if (command === "revoke" && rest.length === 1 && /^\d{1,9}$/.test(rest[0] ?? "")) {
    const id = Number(rest[0]);
    if (!(await revokeStoredKey(db, id))) throw new UsageError(`no active key with id ${id}`);
    return `revoked key ${id}: every instance refuses it within 10 seconds`;
  }
  throw new UsageError(USAGE);
}

function table(rows: string[][]): string {
  const widths = rows[0]?.map((_, column) => Math.max(...rows.map((row) => (row[column] ?? "").length))) ?? [];
  return rows
    .map((row) =>
      row
        .map((cell, column) => cell.padEnd(widths[column] ?? 0))
        .join("  ")
        .trimEnd(),
    )
    .join("\n");
}

async function main(): Promise<number> {
  const config = loadToolConfig();
  const db = await openDatabase({ url: config.DATABASE_URL, dataDir: config.DATA_DIR, poolSize: 1 });
  try {
    await applyMigrations(db.pool);
    console.log(await runKeysCommand(db, process.argv.slice(2)));
    return 0;
  } catch (error) {
    if (!(error instanceof UsageError) && !(error instanceof TypeError)) throw error;
    console.error(error.message); // parseArgs reports unknown options as a TypeError
    return 2;
  } finally {
    await db.close();
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.exitCode = await main().catch((error: unknown) => {
    console.error(toolFailureMessage(error, [ConfigError]));
    return 1;
  });
}
