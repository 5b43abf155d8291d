import { z } from "zod";

const optionalSecret = z
  .string()
  .trim()
  .optional()
  .transform((value) => (value ? value : undefined));

const milliseconds = (fallback: number) => z.coerce.number().int().min(0).default(fallback);

const envSchema = z.object({
  NODE_ENV: z.enum(["development", "production", "test"]).default("development"),
  PORT: z.coerce.number({ error: "must be a number" }).int("must be a whole number").min(0).max(65535).default(3000),
  DATABASE_URL: z
    .string()
    .optional()
    .transform((value) => (value ? value : undefined))
    .refine((value) => value === undefined || /^postgres(ql)?:\/\//.test(value), "must be a postgres:// URL"),
  DATA_DIR: z.string().min(1).default("./.data"),
  DATABASE_POOL_SIZE: z.coerce.number().int().min(1).max(100).default(10),
  BETATEL_BASE_URL: z
    .url({ protocol: /^https?$/, error: "must be an http:// or https:// URL" })
    .default("https://api.betatel.com"),
  BETATEL_API_KEY: optionalSecret,
  BETATEL_ACCOUNT_ID: optionalSecret,
  BETATEL_TIMEOUT_MS: z.coerce.number().int().min(1).max(120_000).default(10_000),
  WEBHOOK_SECRET: optionalSecret,
  WEBHOOK_SIGNING_SECRET: optionalSecret.refine(
    (value) => value === undefined || value.startsWith("whsec_"),
    "must be a Standard Webhooks key starting with whsec_",
  ),
  API_KEYS: z
    .string()
    .optional()
    .transform((value) =>
      (value ?? "")
        .split(",")
        .map((key) => key.trim())
        .filter(Boolean),
    ),
  /** POST /v1/messages per API key per minute, per instance (in memory); 0 turns the limit off. */
  RATE_LIMIT_PER_MINUTE: z.coerce.number().int().min(0).default(600),
  LOG_LEVEL: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
  PUBLIC_URL: z.url({ protocol: /^https?$/, error: "must be an http:// or https:// URL" }).optional(),
  SANDBOX_STEP_MS: milliseconds(2000),
  SANDBOX_FAILURE_RATE: z.coerce.number().min(0).max(1).default(0.1),
  RECONCILE_INTERVAL_MS: milliseconds(60_000),
  RECONCILE_AFTER_MS: milliseconds(300_000),
  RECONCILE_BATCH_SIZE: z.coerce.number().int().min(1).max(1000).default(50),
  EXPIRE_AFTER_MS: milliseconds(86_400_000),
  // Operations (docs/ops.md): /metrics guard and the retention job.
  METRICS_TOKEN: optionalSecret,
  // The ops page's sign-in token (src/ops/page); in production the page is locked without it.
  OPS_TOKEN: optionalSecret.refine(
    (value) => value === undefined || value.length >= 16,
    "must be at least 16 characters",
  ),
  RETENTION_INTERVAL_MS: milliseconds(3_600_000),
  BUFFERED_RETENTION_MS: milliseconds(7 * 86_400_000),
  // Unset or empty: messages are kept forever.
  MESSAGE_RETENTION_MS: z.preprocess(
    (value) => (typeof value === "string" && value.trim() === "" ? undefined : value),
    z.coerce.number().int().min(1).optional(),
  ),
});

export type Config = Readonly<
  Omit<z.infer<typeof envSchema>, "BETATEL_API_KEY" | "BETATEL_ACCOUNT_ID"> & {
    betatel: { apiKey: string; accountId: string } | undefined;
    sandbox: boolean;
  }
>;

export class ConfigError extends Error {
  override name = "ConfigError";
}

/** Parses the environment once; a wrong value throws one line naming the variable. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  // `PORT=` (set but empty, common in compose files) means "not set": without this, numbers coerce "" to 0.
  const given = Object.fromEntries(
    Object.entries(env).filter(([, value]) => value !== undefined && value.trim() !== ""),
  );
  const parsed = envSchema.safeParse(given);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new ConfigError(`Invalid configuration: ${String(issue?.path[0] ?? "environment")}: ${issue?.message}`);
  }
  const { BETATEL_API_KEY: apiKey, BETATEL_ACCOUNT_ID: accountId, ...rest } = parsed.data;
  if (Boolean(apiKey) !== Boolean(accountId)) {
    throw new ConfigError(
      `Invalid configuration: ${apiKey ? "BETATEL_ACCOUNT_ID" : "BETATEL_API_KEY"}: set both Betatel credentials or neither`,
    );
  }
  const production = rest.NODE_ENV === "production";
  if (production) {
    const missing = [
      !apiKey && "BETATEL_API_KEY",
      !accountId && "BETATEL_ACCOUNT_ID",
      rest.API_KEYS.length === 0 && "API_KEYS",
      !rest.WEBHOOK_SECRET && "WEBHOOK_SECRET",
    ].filter(Boolean);
    if (missing.length > 0) {
      throw new ConfigError(`Invalid configuration: ${missing.join(", ")}: required when NODE_ENV=production`);
    }
  }
  const betatel = apiKey && accountId ? { apiKey, accountId } : undefined;
  return Object.freeze({ ...rest, betatel, sandbox: !betatel });
}
