import { z } from "zod";
import { loadEnvFile } from "./env-file.ts";
import { parseApiKeys } from "./keys/static-keys.ts";
import { parseAllowedCountries, parseRecipientLimits } from "./limits/limits-config.ts";
import { sendDeadlineMs } from "./messages/deadlines.ts";
import { parseCidr } from "./webhooks/sender-limits.ts";

const optionalSecret = z
  .string()
  .trim()
  .optional()
  .transform((value) => (value ? value : undefined));

/** Signs the watch tokens of `watchUrl` outside production when WATCH_SECRET is unset (zero-config runs). */
export const DEVELOPMENT_WATCH_SECRET = "development-only-watch-secret-never-use-in-production";

/** `CORS_ORIGINS`: comma-separated `scheme://host[:port]` origins, exactly as a browser sends `Origin`. */
const corsOrigins = z
  .string()
  .optional()
  .transform((value, ctx) => {
    const origins: string[] = [];
    for (const entry of (value ?? "").split(",").map((origin) => origin.trim().replace(/\/$/, ""))) {
      if (!entry) continue;
      let origin: string | undefined;
      try {
        const url = new URL(entry);
        if (/^https?:$/.test(url.protocol)) origin = url.origin;
      } catch {}
      if (origin !== entry) {
        ctx.addIssue({ code: "custom", message: `"${entry}" is not an origin like https://app.example.com` });
        return z.NEVER;
      }
      origins.push(origin);
    }
    return origins;
  });

const commaList = (value: string) =>
  value
    .split(",")
    .map((entry) => entry.trim())
    .filter(Boolean);

/** Express's names for address ranges, usable in TRUST_PROXY. */
const PROXY_RANGE_NAMES = new Set(["loopback", "linklocal", "uniquelocal"]);

/**
 * TRUST_PROXY as Express's "trust proxy" setting: `true`/`false`, a number of proxy hops, or a comma-separated
 * list of proxy addresses/CIDRs (and the names loopback, linklocal, uniquelocal).
 */
const trustProxy = z
  .string()
  .optional()
  .transform((value, ctx): boolean | number | string[] => {
    const text = value?.trim().toLowerCase() ?? "false";
    if (text === "true" || text === "false") return text === "true";
    if (/^\d{1,2}$/.test(text)) return Number(text);
    const entries = commaList(text);
    const bad = entries.find((entry) => !PROXY_RANGE_NAMES.has(entry) && !parseCidr(entry));
    if (bad !== undefined || entries.length === 0) {
      ctx.addIssue({
        code: "custom",
        message: `must be true, false, a hop count or addresses/CIDRs${bad ? ` (not "${bad}")` : ""}`,
      });
      return z.NEVER;
    }
    return entries;
  });

const milliseconds = (fallback: number) => z.coerce.number().int().min(0).default(fallback);

const envSchema = z.object({
  NODE_ENV: z.enum(["development", "production", "test"]).default("development"),
  PORT: z.coerce.number({ error: "must be a number" }).int("must be a whole number").min(0).max(65535).default(3000),
  /** Interface to listen on; unset: every interface (IPv6 and IPv4 where available). */
  HOST: z
    .union([z.ipv4(), z.ipv6(), z.hostname().regex(/[^\d.]/)], {
      error: "must be an IP address or a host name (e.g. 127.0.0.1, 0.0.0.0, ::, localhost)",
    })
    .optional(),
  DATABASE_URL: z
    .string()
    .optional()
    .transform((value) => (value ? value : undefined))
    .refine((value) => value === undefined || /^postgres(ql)?:\/\//.test(value), "must be a postgres:// URL"),
  DATA_DIR: z.string().min(1).default("./.data"),
  DATABASE_POOL_SIZE: z.coerce.number().int().min(1).max(100).default(10),
  /** Longest one query on a Postgres server may run (a lock held elsewhere, a silent network) before a 503. */
  DATABASE_QUERY_TIMEOUT_MS: z.coerce.number().int().min(1_000).max(600_000).default(10_000),
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
  /** Client CIDRs allowed to call the webhook (comma-separated); unset allows any. */
  WEBHOOK_ALLOWED_IPS: z
    .string()
    .optional()
    .transform((value, ctx) => {
      const entries = commaList(value ?? "");
      const bad = entries.find((entry) => !parseCidr(entry));
      if (bad !== undefined) {
        ctx.addIssue({ code: "custom", message: `must be comma-separated IP addresses or CIDRs (not "${bad}")` });
        return z.NEVER;
      }
      return entries;
    }),
  /** Statuses for unknown uuids (buffered rows) one webhook sender may store per minute; 0 turns it off. */
  WEBHOOK_BUFFERED_PER_MINUTE: z.coerce.number().int().min(0).default(10_000),
  TRUST_PROXY: trustProxy,
  /** Key of the watch tokens in `watchUrl` (HMAC); at least 32 characters. Required in production. */
  WATCH_SECRET: optionalSecret.refine(
    (value) => value === undefined || value.length >= 32,
    "must be at least 32 characters",
  ),
  CORS_ORIGINS: corsOrigins,
  // `team:key` pairs or bare keys (team `default`); more keys live in the api_keys table (`npm run keys`).
  API_KEYS: z.string().optional().transform(parseApiKeys),
  /** POST /v1/messages per API key per minute, counted over all instances (in Postgres); 0 turns it off. */
  RATE_LIMIT_PER_MINUTE: z.coerce.number().int().min(0).default(600),
  /** Open streams + long-polls per instance, and per API key (the anonymous caller counts as one key). */
  LIVE_MAX_WATCHERS: z.coerce.number().int().min(1).max(100_000).default(2000),
  LIVE_MAX_WATCHERS_PER_KEY: z.coerce.number().int().min(1).max(100_000).default(500),
  // Abuse limits: sends per recipient number per window (all teams, all instances), and allowed countries.
  RECIPIENT_LIMITS: z.string().default("5/10m,20/24h").transform(parseRecipientLimits),
  ALLOWED_COUNTRIES: z.string().transform(parseAllowedCountries).optional(),
  LOG_LEVEL: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
  PUBLIC_URL: z.url({ protocol: /^https?$/, error: "must be an http:// or https:// URL" }).optional(),
  SANDBOX_STEP_MS: milliseconds(2000),
  SANDBOX_FAILURE_RATE: z.coerce.number().min(0).max(1).default(0.1),
  RECONCILE_INTERVAL_MS: milliseconds(60_000),
  RECONCILE_AFTER_MS: milliseconds(300_000),
  RECONCILE_BATCH_SIZE: z.coerce.number().int().min(1).max(1000).default(50),
  EXPIRE_AFTER_MS: milliseconds(86_400_000),
  /** Expiry and the sweep of buffered statuses whose message exists; independent of the WDR poller. 0: off. */
  SWEEP_INTERVAL_MS: milliseconds(60_000),
  /** Buffered statuses of a uuid never stored this old are looked up in Betatel's WDR (by the poller). 0: never. */
  ORPHAN_ADOPT_AFTER_MS: milliseconds(300_000),
  /** Longest a graceful shutdown takes; it must cover a send in flight (checked below). */
  SHUTDOWN_GRACE_MS: z.coerce.number().int().min(1_000).max(600_000).default(35_000),
  // Status callbacks: endpoint signing secrets are derived from CALLBACKS_SECRET (in production, callbacks are
  // off without it).
  CALLBACKS_SECRET: optionalSecret.refine(
    (value) => value === undefined || value.length >= 32,
    "must be at least 32 characters (e.g. openssl rand -base64 32)",
  ),
  CALLBACKS_ALLOW_PRIVATE: z.enum(["true", "false"]).optional(),
  /** How often an idle worker looks for due callbacks; 0 turns delivery off in this instance. */
  CALLBACKS_POLL_MS: milliseconds(1000),
  // Verifications: the code's key (required in production), its lifetime, its digits and the text around it.
  VERIFY_SECRET: optionalSecret.refine(
    (value) => value === undefined || value.length >= 32,
    "must be at least 32 characters (e.g. openssl rand -base64 32)",
  ),
  VERIFY_TTL_MS: z.coerce.number().int().min(60_000).max(86_400_000).default(600_000),
  VERIFY_CODE_LENGTH: z.coerce.number().int().min(4).max(10).default(6),
  VERIFY_TEXT: z
    .string()
    .max(4000)
    .refine((text) => text.includes("{code}"), "must contain {code}")
    .default("Your verification code is {code}. It expires in {minutes} minutes."),
  // Operations (docs/operations.md): /metrics guard and the retention job.
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
  Omit<
    z.infer<typeof envSchema>,
    | "BETATEL_API_KEY"
    | "BETATEL_ACCOUNT_ID"
    | "CALLBACKS_SECRET"
    | "CALLBACKS_ALLOW_PRIVATE"
    | "VERIFY_SECRET"
    | "WATCH_SECRET"
  > & {
    WATCH_SECRET: string;
    betatel: { apiKey: string; accountId: string } | undefined;
    /** Undefined in production when unset: callbacks are off (no endpoint can be added, none is delivered). */
    CALLBACKS_SECRET: string | undefined;
    CALLBACKS_ALLOW_PRIVATE: boolean;
    VERIFY_SECRET: string;
  }
>;

// Outside production, fixed keys so that everything works with no setup (and the CLI agrees with the service).
const DEVELOPMENT_CALLBACKS_SECRET = "development-only-callbacks-secret-not-for-production";
const DEVELOPMENT_VERIFY_SECRET = "development-only-verify-secret-not-for-production";

export class ConfigError extends Error {
  override name = "ConfigError";
}

/** `env` read by `schema`; a wrong value throws one line naming the variable. */
function parseEnv<Schema extends z.ZodType>(schema: Schema, env: NodeJS.ProcessEnv): z.infer<Schema> {
  // `PORT=` (set but empty, common in compose files) means "not set": without this, numbers coerce "" to 0.
  const given = Object.fromEntries(
    Object.entries(env).filter(([, value]) => value !== undefined && value.trim() !== ""),
  );
  const parsed = schema.safeParse(given);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new ConfigError(`Invalid configuration: ${String(issue?.path[0] ?? "environment")}: ${issue?.message}`);
  }
  return parsed.data;
}

function requireInProduction(missing: (string | false)[]): void {
  const names = missing.filter(Boolean);
  if (names.length > 0) {
    throw new ConfigError(`Invalid configuration: ${names.join(", ")}: required when NODE_ENV=production`);
  }
}

/** The callbacks' key and target rule, the same in the service and in `npm run callbacks`. */
function callbackSettings(
  env: Pick<z.infer<typeof envSchema>, "NODE_ENV" | "CALLBACKS_SECRET" | "CALLBACKS_ALLOW_PRIVATE">,
) {
  const production = env.NODE_ENV === "production";
  return {
    CALLBACKS_SECRET: env.CALLBACKS_SECRET ?? (production ? undefined : DEVELOPMENT_CALLBACKS_SECRET),
    // Callback URLs on loopback or private addresses (and plain http): allowed outside production by default.
    CALLBACKS_ALLOW_PRIVATE: (env.CALLBACKS_ALLOW_PRIVATE ?? (production ? "false" : "true")) === "true",
  };
}

/** Parses the environment once; a wrong value throws one line naming the variable. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const { BETATEL_API_KEY: apiKey, BETATEL_ACCOUNT_ID: accountId, ...rest } = parseEnv(envSchema, env);
  if (Boolean(apiKey) !== Boolean(accountId)) {
    throw new ConfigError(
      `Invalid configuration: ${apiKey ? "BETATEL_ACCOUNT_ID" : "BETATEL_API_KEY"}: set both Betatel credentials or neither`,
    );
  }
  const production = rest.NODE_ENV === "production";
  if (production) {
    requireInProduction([
      !apiKey && "BETATEL_API_KEY",
      !accountId && "BETATEL_ACCOUNT_ID",
      rest.API_KEYS.length === 0 && "API_KEYS",
      !rest.WEBHOOK_SECRET && "WEBHOOK_SECRET",
      !rest.VERIFY_SECRET && "VERIFY_SECRET",
      !rest.WATCH_SECRET && "WATCH_SECRET",
      // Never the embedded database in production: its data would sit in the container's DATA_DIR.
      !rest.DATABASE_URL && "DATABASE_URL",
    ]);
  }
  // A send accepted just before SIGTERM must be able to finish (Betatel, then storing it) within the grace.
  const sendMs = sendDeadlineMs(rest.BETATEL_TIMEOUT_MS);
  if (sendMs > rest.SHUTDOWN_GRACE_MS) {
    throw new ConfigError(
      `Invalid configuration: SHUTDOWN_GRACE_MS: a send can take up to ${sendMs} ms with BETATEL_TIMEOUT_MS=${rest.BETATEL_TIMEOUT_MS}; set SHUTDOWN_GRACE_MS to at least ${sendMs} ms (and the orchestrator's stop timeout above it) or lower BETATEL_TIMEOUT_MS`,
    );
  }
  const betatel = apiKey && accountId ? { apiKey, accountId } : undefined;
  return Object.freeze({
    ...rest,
    betatel,
    ...callbackSettings(rest),
    VERIFY_SECRET: rest.VERIFY_SECRET ?? DEVELOPMENT_VERIFY_SECRET,
    WATCH_SECRET: rest.WATCH_SECRET ?? DEVELOPMENT_WATCH_SECRET,
  });
}

/** What the command-line tools (`npm run migrate`, `keys`, `callbacks`) use: the database and the callbacks' key. */
export type ToolConfig = Pick<
  Config,
  "NODE_ENV" | "DATABASE_URL" | "DATA_DIR" | "CALLBACKS_SECRET" | "CALLBACKS_ALLOW_PRIVATE"
>;

const toolEnvSchema = envSchema.pick({
  NODE_ENV: true,
  DATABASE_URL: true,
  DATA_DIR: true,
  CALLBACKS_SECRET: true,
  CALLBACKS_ALLOW_PRIVATE: true,
});

/**
 * The tools' configuration: the same variables and rules as the service's, but only those they use, so a
 * production shell without the provider's credentials or the service's secrets can still manage the database.
 * Without `env`, the process's environment over the working directory's `.env`, as the server reads them.
 */
export function loadToolConfig(env?: NodeJS.ProcessEnv): ToolConfig {
  if (!env) loadEnvFile();
  const parsed = parseEnv(toolEnvSchema, env ?? process.env);
  // As for the service: an embedded database in production would be one no instance reads.
  if (parsed.NODE_ENV === "production") requireInProduction([!parsed.DATABASE_URL && "DATABASE_URL"]);
  return Object.freeze({ ...parsed, ...callbackSettings(parsed) });
}

/** What an operator should hear at start about a configuration that runs but is weaker than it should be. */
export function configWarnings(config: Config): string[] {
  const warnings: string[] = [];
  if (config.NODE_ENV === "production" && !config.WEBHOOK_SIGNING_SECRET) {
    warnings.push(
      "WEBHOOK_SIGNING_SECRET is unset in production: webhooks are authenticated by the shared secret alone (no signature, no replay window)",
    );
  }
  if (config.NODE_ENV === "production" && !config.METRICS_TOKEN) {
    warnings.push(
      "METRICS_TOKEN is unset in production: /metrics is open to anyone who can reach it (keep it on an internal network)",
    );
  }
  return warnings;
}
