import { spawn } from "node:child_process";
import { describe, expect, inject, it } from "vitest";
import { ConfigError, configWarnings, DEVELOPMENT_WATCH_SECRET, loadConfig, loadToolConfig } from "../src/config.ts";
import { spawnServer } from "./support/spawn-server.ts";
import { embedded } from "./support/test-database.ts";

const CREDENTIALS = { BETATEL_API_KEY: "key", BETATEL_ACCOUNT_ID: "account" };
const WATCH_SECRET = "a-watch-secret-of-at-least-32-characters";
const PRODUCTION = {
  NODE_ENV: "production",
  ...CREDENTIALS,
  API_KEYS: "k1",
  WEBHOOK_SECRET: "s",
  VERIFY_SECRET: "test-verify-secret-test-verify-secret-0123",
  WATCH_SECRET,
  DATABASE_URL: "postgresql://db.internal/otp",
};

/** The one-line message loadConfig throws for `env`. */
function configError(env: Record<string, string>): string {
  try {
    loadConfig(env);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as Error).message;
  }
  throw new Error("loadConfig accepted the environment");
}

describe("loadConfig", () => {
  it("when nothing is set, then the documented defaults apply and it runs in sandbox mode", () => {
    const config = loadConfig({});

    expect(config).toMatchObject({
      PORT: 3000,
      DATA_DIR: "./.data",
      BETATEL_BASE_URL: "https://api.betatel.com",
      BETATEL_TIMEOUT_MS: 10_000,
      API_KEYS: [],
      LOG_LEVEL: "info",
      RECONCILE_INTERVAL_MS: 60_000,
      RECONCILE_AFTER_MS: 300_000,
      EXPIRE_AFTER_MS: 86_400_000,
      SWEEP_INTERVAL_MS: 60_000,
      ORPHAN_ADOPT_AFTER_MS: 300_000,
      SHUTDOWN_GRACE_MS: 35_000,
      betatel: undefined,
    });
    expect(config.DATABASE_URL).toBeUndefined();
    expect(config.WEBHOOK_SECRET).toBeUndefined();
    expect(Object.isFrozen(config)).toBe(true);
  });

  it("when the live status caps are not set, then an instance serves 2000 watchers, 500 per key", () => {
    expect(loadConfig({})).toMatchObject({ LIVE_MAX_WATCHERS: 2000, LIVE_MAX_WATCHERS_PER_KEY: 500 });
  });

  it("when both Betatel credentials are set, then it is not a sandbox and API_KEYS is a trimmed list", () => {
    const config = loadConfig({ ...CREDENTIALS, API_KEYS: " a, b ,,c " });

    expect(config.betatel).toEqual({ apiKey: "key", accountId: "account" });
    expect(config.API_KEYS).toEqual([
      { team: "default", key: "a" },
      { team: "default", key: "b" },
      { team: "default", key: "c" },
    ]);
  });

  it("when API_KEYS has team:key pairs, then each key belongs to its team and a bare key to `default`", () => {
    const config = loadConfig({ API_KEYS: "growth:k1, billing:k2:with-colon ,k3" });

    expect(config.API_KEYS).toEqual([
      { team: "growth", key: "k1" },
      { team: "billing", key: "k2:with-colon" },
      { team: "default", key: "k3" },
    ]);
  });

  it("when the abuse limits are not set, then 5 per 10 minutes and 20 per 24 hours per number, every country", () => {
    const config = loadConfig({});

    expect(config.RECIPIENT_LIMITS).toEqual([
      { limit: 5, windowMs: 600_000, label: "5/10m" },
      { limit: 20, windowMs: 86_400_000, label: "20/24h" },
    ]);
    expect(config.ALLOWED_COUNTRIES).toBeUndefined();
  });

  it("when RECIPIENT_LIMITS is off and ALLOWED_COUNTRIES is a list in any case, then no recipient limit and those countries", () => {
    const config = loadConfig({ RECIPIENT_LIMITS: "off", ALLOWED_COUNTRIES: "ba, hr,RS" });

    expect(config.RECIPIENT_LIMITS).toEqual([]);
    expect([...(config.ALLOWED_COUNTRIES ?? [])]).toEqual(["BA", "HR", "RS"]);
  });

  it("when a variable is set but empty (PORT=), then its default applies, not zero", () => {
    const config = loadConfig({ PORT: "", BETATEL_TIMEOUT_MS: "", RECONCILE_INTERVAL_MS: " ", LOG_LEVEL: "" });

    expect(config.PORT).toBe(3000);
    expect(config.BETATEL_TIMEOUT_MS).toBe(10_000);
    expect(config.RECONCILE_INTERVAL_MS).toBe(60_000);
    expect(config.LOG_LEVEL).toBe("info");
  });

  it("when production has everything it needs, then it loads", () => {
    expect(loadConfig(PRODUCTION).betatel).toEqual({ apiKey: "key", accountId: "account" });
  });

  it("when production has no DATABASE_URL, then it refuses rather than use the embedded database", () => {
    const { DATABASE_URL: _, ...withoutDatabase } = PRODUCTION;
    expect(configError(withoutDatabase)).toBe("Invalid configuration: DATABASE_URL: required when NODE_ENV=production");
  });

  const wrong: { env: Record<string, string>; variable: string }[] = [
    { env: { PORT: "abc" }, variable: "PORT" },
    { env: { PORT: "70000" }, variable: "PORT" },
    { env: { PORT: "30.5" }, variable: "PORT" },
    { env: { BETATEL_BASE_URL: "ftp://x" }, variable: "BETATEL_BASE_URL" },
    { env: { BETATEL_BASE_URL: "not a url" }, variable: "BETATEL_BASE_URL" },
    { env: { BETATEL_TIMEOUT_MS: "0" }, variable: "BETATEL_TIMEOUT_MS" },
    { env: { BETATEL_TIMEOUT_MS: "ten" }, variable: "BETATEL_TIMEOUT_MS" },
    { env: { DATABASE_URL: "mysql://localhost/db" }, variable: "DATABASE_URL" },
    { env: { DATABASE_POOL_SIZE: "0" }, variable: "DATABASE_POOL_SIZE" },
    { env: { NODE_ENV: "staging" }, variable: "NODE_ENV" },
    { env: { LOG_LEVEL: "loud" }, variable: "LOG_LEVEL" },
    { env: { WEBHOOK_SIGNING_SECRET: "plain" }, variable: "WEBHOOK_SIGNING_SECRET" },
    { env: { PUBLIC_URL: "example" }, variable: "PUBLIC_URL" },
    { env: { SANDBOX_STEP_MS: "-1" }, variable: "SANDBOX_STEP_MS" },
    { env: { SANDBOX_FAILURE_RATE: "1.5" }, variable: "SANDBOX_FAILURE_RATE" },
    { env: { RECONCILE_INTERVAL_MS: "soon" }, variable: "RECONCILE_INTERVAL_MS" },
    { env: { EXPIRE_AFTER_MS: "-5" }, variable: "EXPIRE_AFTER_MS" },
    { env: { SWEEP_INTERVAL_MS: "-1" }, variable: "SWEEP_INTERVAL_MS" },
    { env: { ORPHAN_ADOPT_AFTER_MS: "later" }, variable: "ORPHAN_ADOPT_AFTER_MS" },
    { env: { SHUTDOWN_GRACE_MS: "500" }, variable: "SHUTDOWN_GRACE_MS" },
    // A send (Betatel's 60 s, then storing it) could not finish within the default 35 s grace.
    { env: { BETATEL_TIMEOUT_MS: "60000" }, variable: "SHUTDOWN_GRACE_MS" },
    { env: { LIVE_MAX_WATCHERS: "0" }, variable: "LIVE_MAX_WATCHERS" },
    { env: { LIVE_MAX_WATCHERS_PER_KEY: "many" }, variable: "LIVE_MAX_WATCHERS_PER_KEY" },
    { env: { BETATEL_API_KEY: "key" }, variable: "BETATEL_ACCOUNT_ID" },
    { env: { BETATEL_ACCOUNT_ID: "account" }, variable: "BETATEL_API_KEY" },
    { env: { API_KEYS: "growth team:k1" }, variable: "API_KEYS" },
    { env: { API_KEYS: "growth:" }, variable: "API_KEYS" },
    { env: { API_KEYS: "growth:k1,billing:k1" }, variable: "API_KEYS" },
    { env: { RECIPIENT_LIMITS: "5" }, variable: "RECIPIENT_LIMITS" },
    { env: { RECIPIENT_LIMITS: "5/10x" }, variable: "RECIPIENT_LIMITS" },
    { env: { RECIPIENT_LIMITS: "0/10m" }, variable: "RECIPIENT_LIMITS" },
    { env: { RECIPIENT_LIMITS: "5/10m,,20/24h" }, variable: "RECIPIENT_LIMITS" },
    { env: { RECIPIENT_LIMITS: "5/90d" }, variable: "RECIPIENT_LIMITS" },
    { env: { ALLOWED_COUNTRIES: "BA,XX" }, variable: "ALLOWED_COUNTRIES" },
    { env: { ALLOWED_COUNTRIES: "Bosnia" }, variable: "ALLOWED_COUNTRIES" },
    { env: { RATE_LIMIT_PER_MINUTE: "-1" }, variable: "RATE_LIMIT_PER_MINUTE" },
    { env: { ...PRODUCTION, API_KEYS: "" }, variable: "API_KEYS" },
    { env: { ...PRODUCTION, API_KEYS: " , " }, variable: "API_KEYS" },
    { env: { ...PRODUCTION, WEBHOOK_SECRET: "" }, variable: "WEBHOOK_SECRET" },
    { env: { ...PRODUCTION, WATCH_SECRET: "" }, variable: "WATCH_SECRET" },
    { env: { WATCH_SECRET: "too-short-for-an-hmac-key" }, variable: "WATCH_SECRET" },
    { env: { CORS_ORIGINS: "https://app.example.com/wait" }, variable: "CORS_ORIGINS" },
    { env: { CORS_ORIGINS: "*" }, variable: "CORS_ORIGINS" },
    { env: { CORS_ORIGINS: "app.example.com" }, variable: "CORS_ORIGINS" },
    { env: { CORS_ORIGINS: "ftp://app.example.com" }, variable: "CORS_ORIGINS" },
    { env: { ...PRODUCTION, BETATEL_API_KEY: "", BETATEL_ACCOUNT_ID: "" }, variable: "BETATEL_API_KEY" },
  ];

  it.each(wrong)("when $env, then it throws one line naming $variable", ({ env, variable }) => {
    const message = configError(env);

    expect(message).toMatch(/^Invalid configuration: /);
    expect(message).toContain(variable);
    expect(message).not.toContain("\n");
  });

  it("when WATCH_SECRET is unset outside production, then a fixed development key signs watch tokens", () => {
    expect(loadConfig({}).WATCH_SECRET).toBe(DEVELOPMENT_WATCH_SECRET);
    expect(loadConfig({ WATCH_SECRET }).WATCH_SECRET).toBe(WATCH_SECRET);
  });

  it("when CORS_ORIGINS lists origins, then they are kept as a browser sends them (no trailing slash)", () => {
    expect(loadConfig({}).CORS_ORIGINS).toEqual([]);
    expect(loadConfig({ CORS_ORIGINS: " https://app.example.com/, http://localhost:5173 ,," }).CORS_ORIGINS).toEqual([
      "https://app.example.com",
      "http://localhost:5173",
    ]);
    expect(configError({ CORS_ORIGINS: "https://app.example.com,https://x.example/path" })).toBe(
      'Invalid configuration: CORS_ORIGINS: "https://x.example/path" is not an origin like https://app.example.com',
    );
  });

  it("when the shutdown grace covers the longest send, then a long Betatel timeout is accepted", () => {
    expect(configError({ BETATEL_TIMEOUT_MS: "60000", SHUTDOWN_GRACE_MS: "80000" })).toContain("at least 81000 ms");
    expect(loadConfig({ BETATEL_TIMEOUT_MS: "60000", SHUTDOWN_GRACE_MS: "81000" }).SHUTDOWN_GRACE_MS).toBe(81_000);
  });

  it("when a URL has another scheme, then the message says which schemes are accepted", () => {
    expect(configError({ BETATEL_BASE_URL: "ftp://x" })).toBe(
      "Invalid configuration: BETATEL_BASE_URL: must be an http:// or https:// URL",
    );
    expect(configError({ PUBLIC_URL: "ftp://x" })).toContain("PUBLIC_URL: must be an http:// or https:// URL");
  });

  it("when PORT is not a number, then the message says so in plain words", () => {
    expect(configError({ PORT: "abc" })).toBe("Invalid configuration: PORT: must be a number");
  });

  it("when several values are wrong, then the message still is one line", () => {
    expect(configError({ PORT: "abc", LOG_LEVEL: "loud", BETATEL_BASE_URL: "ftp://x" })).not.toContain("\n");
  });

  it("when a secret is wrong, then the message does not repeat its value", () => {
    expect(configError({ WEBHOOK_SIGNING_SECRET: "hunter2-signing" })).not.toContain("hunter2");
    expect(configError({ WATCH_SECRET: "hunter2-watch" })).not.toContain("hunter2");
  });
});

describe("loadToolConfig (npm run migrate, keys, callbacks)", () => {
  const CALLBACKS_SECRET = "a-callbacks-secret-of-at-least-32-chars";

  it("when production has only DATABASE_URL, then the tools load without Betatel or the service's secrets", () => {
    const config = loadToolConfig({ NODE_ENV: "production", DATABASE_URL: "postgresql://db.internal/otp" });
    expect(config).toMatchObject({ NODE_ENV: "production", DATABASE_URL: "postgresql://db.internal/otp" });
    // Production defaults, as the service has them: callbacks off without the secret, no private targets.
    expect(config.CALLBACKS_SECRET).toBeUndefined();
    expect(config.CALLBACKS_ALLOW_PRIVATE).toBe(false);
    expect(Object.isFrozen(config)).toBe(true);
  });

  it("when the service's own settings are wrong, then a tool that does not use them still loads", () => {
    expect(loadToolConfig({ PORT: "abc", BETATEL_API_KEY: "key" }).DATABASE_URL).toBeUndefined();
  });

  it("when CALLBACKS_SECRET and CALLBACKS_ALLOW_PRIVATE are set, then the tools read them as the service does", () => {
    const env = { ...PRODUCTION, CALLBACKS_SECRET, CALLBACKS_ALLOW_PRIVATE: "true" };
    const { CALLBACKS_SECRET: secret, CALLBACKS_ALLOW_PRIVATE: allowPrivate } = loadConfig(env);
    expect(loadToolConfig(env)).toMatchObject({ CALLBACKS_SECRET: secret, CALLBACKS_ALLOW_PRIVATE: allowPrivate });
    expect(loadToolConfig({}).CALLBACKS_SECRET).toBe(loadConfig({}).CALLBACKS_SECRET);
  });

  it.each([
    { env: { NODE_ENV: "production" }, message: "DATABASE_URL: required when NODE_ENV=production" },
    { env: { DATABASE_URL: "mysql://localhost/db" }, message: "DATABASE_URL: must be a postgres:// URL" },
    { env: { CALLBACKS_SECRET: "short" }, message: "CALLBACKS_SECRET: must be at least 32 characters" },
  ])("when $env, then the tools refuse with one line: $message", ({ env, message }) => {
    const load = () => loadToolConfig(env);
    expect(load).toThrow(ConfigError);
    expect(load).toThrow(`Invalid configuration: ${message}`);
  });
});

describe("HOST", () => {
  it("when unset, then no address is chosen (every interface); IPs and host names are accepted", () => {
    expect(loadConfig({}).HOST).toBeUndefined();
    for (const host of ["127.0.0.1", "0.0.0.0", "::", "::1", "localhost", "otp.internal"]) {
      expect(loadConfig({ HOST: host }).HOST).toBe(host);
    }
  });

  it.each([["not a host!"], ["http://127.0.0.1"], ["300.1.2.3"], ["[::1]"]])(
    "when HOST=%s, then the start is refused with a clear message",
    (host) => {
      expect(configError({ HOST: host })).toBe(
        "Invalid configuration: HOST: must be an IP address or a host name (e.g. 127.0.0.1, 0.0.0.0, ::, localhost)",
      );
    },
  );

  it.skipIf(embedded)(
    "when HOST=127.0.0.2, then it answers on that address only, and the sandbox reaches its own webhook",
    async () => {
      const server = await spawnServer({
        HOST: "127.0.0.2",
        DATABASE_URL: inject("databaseUrl"),
        SANDBOX_STEP_MS: "20",
        SANDBOX_FAILURE_RATE: "0",
        RECONCILE_INTERVAL_MS: "0",
        RETENTION_INTERVAL_MS: "0",
      });
      try {
        const port = new URL(server.url).port;
        expect(server.output()).toContain('"host":"127.0.0.2"');
        const own = `http://127.0.0.2:${port}`;
        expect((await fetch(`${own}/healthz`)).status).toBe(200);
        // Same port, another loopback address: nothing listens there.
        await expect(fetch(`http://127.0.0.1:${port}/healthz`)).rejects.toThrow();

        const sent = await fetch(`${own}/v1/messages`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ to: "38761444555", text: "Your code is 123456" }),
        });
        expect(sent.status).toBe(201);
        const { uuid } = (await sent.json()) as { uuid: string };
        let status = "PENDING";
        for (let i = 0; i < 100 && status !== "READ"; i++) {
          await new Promise((resolve) => setTimeout(resolve, 50));
          status = ((await (await fetch(`${own}/v1/messages/${uuid}`)).json()) as { status: string }).status;
        }
        expect(status).toBe("READ");
      } finally {
        server.kill("SIGTERM");
        await server.exited;
      }
    },
  );
});

describe("webhook client addresses", () => {
  it("when WEBHOOK_ALLOWED_IPS and TRUST_PROXY are set, then they are read as lists of CIDRs", () => {
    const config = loadConfig({
      WEBHOOK_ALLOWED_IPS: "10.0.0.0/8, 192.0.2.7 ,2001:db8::/32",
      TRUST_PROXY: "loopback,10.0.0.1",
    });
    expect(config.WEBHOOK_ALLOWED_IPS).toEqual(["10.0.0.0/8", "192.0.2.7", "2001:db8::/32"]);
    expect(config.TRUST_PROXY).toEqual(["loopback", "10.0.0.1"]);
    expect(loadConfig({ TRUST_PROXY: "2" }).TRUST_PROXY).toBe(2);
    expect(loadConfig({}).TRUST_PROXY).toBe(false);
  });

  it.each([
    [{ WEBHOOK_ALLOWED_IPS: "10.0.0.0/33" }, /WEBHOOK_ALLOWED_IPS: .*"10.0.0.0\/33"/],
    [{ WEBHOOK_ALLOWED_IPS: "10.0.0.0/8,example.com" }, /WEBHOOK_ALLOWED_IPS: .*"example.com"/],
    [{ TRUST_PROXY: "yes" }, /TRUST_PROXY: /],
    [{ WEBHOOK_BUFFERED_PER_MINUTE: "-1" }, /WEBHOOK_BUFFERED_PER_MINUTE/],
  ])("when %o, then the start is refused naming the variable", (env, message) => {
    expect(configError(env)).toMatch(message);
  });

  it("when production runs without WEBHOOK_SIGNING_SECRET or METRICS_TOKEN, then a start warning names each", () => {
    const warnings = configWarnings(loadConfig(PRODUCTION)).join("\n");
    expect(warnings).toMatch(/WEBHOOK_SIGNING_SECRET is unset/);
    expect(warnings).toMatch(/METRICS_TOKEN is unset in production: \/metrics is open/);
    expect(
      configWarnings(
        loadConfig({
          ...PRODUCTION,
          WEBHOOK_SIGNING_SECRET: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
          METRICS_TOKEN: "a-scrape-token",
        }),
      ),
    ).toEqual([]);
    expect(configWarnings(loadConfig({}))).toEqual([]);
  });
});

describe("starting the server with a wrong configuration", () => {
  it("when RECIPIENT_LIMITS is not count/window, then the process exits 1 with one line saying the expected form", async () => {
    const { code, stderr } = await run("npx", ["tsx", "src/server.ts"], {
      PATH: process.env.PATH ?? "",
      HOME: process.env.HOME ?? "",
      RECIPIENT_LIMITS: "5 per hour",
    });

    expect(code).toBe(1);
    expect(stderr.trim()).toBe(
      'Invalid configuration: RECIPIENT_LIMITS: "5 per hour" is not count/window (e.g. 5/10m,20/24h; units s, m, h, d; window up to 31d), or "off"',
    );
  });

  it("when a key in API_KEYS is given twice, then the process exits 1 naming API_KEYS but not the key", async () => {
    const { code, stderr } = await run("npx", ["tsx", "src/server.ts"], {
      PATH: process.env.PATH ?? "",
      HOME: process.env.HOME ?? "",
      API_KEYS: "growth:sekrit-key-1,billing:sekrit-key-1",
    });

    expect(code).toBe(1);
    expect(stderr.trim()).toBe("Invalid configuration: API_KEYS: entry 2: the same key is listed twice");
    expect(stderr).not.toContain("sekrit");
  });

  it("when PORT=abc, then the process exits 1 with one clear line on stderr and nothing else", async () => {
    const { code, stdout, stderr } = await run("npx", ["tsx", "src/server.ts"], {
      PATH: process.env.PATH ?? "",
      HOME: process.env.HOME ?? "",
      PORT: "abc",
    });

    expect(code).toBe(1);
    const lines = stderr.split("\n").filter((line) => line.trim() !== "");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toBe("Invalid configuration: PORT: must be a number");
    expect(stdout).toBe("");
  });
});

function run(command: string, args: string[], env: NodeJS.ProcessEnv) {
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
    const child = spawn(command, args, { env, cwd: process.cwd() });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk) => {
      stdout += chunk;
    });
    child.stderr.on("data", (chunk) => {
      stderr += chunk;
    });
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}
