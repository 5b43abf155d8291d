import { spawn } from "node:child_process";
import { describe, expect, it } from "vitest";
import { ConfigError, configWarnings, loadConfig } from "../src/config.ts";

const CREDENTIALS = { BETATEL_API_KEY: "key", BETATEL_ACCOUNT_ID: "account" };
const PRODUCTION = { NODE_ENV: "production", ...CREDENTIALS, API_KEYS: "k1", WEBHOOK_SECRET: "s" };

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
  it("when nothing is set, then the contract's defaults apply and it runs in sandbox mode", () => {
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
      betatel: undefined,
      sandbox: true,
    });
    expect(config.DATABASE_URL).toBeUndefined();
    expect(config.WEBHOOK_SECRET).toBeUndefined();
    expect(Object.isFrozen(config)).toBe(true);
  });

  it("when both Betatel credentials are set, then it is not a sandbox and API_KEYS is a trimmed list", () => {
    const config = loadConfig({ ...CREDENTIALS, API_KEYS: " a, b ,,c " });

    expect(config.betatel).toEqual({ apiKey: "key", accountId: "account" });
    expect(config.sandbox).toBe(false);
    expect(config.API_KEYS).toEqual(["a", "b", "c"]);
  });

  it("when a variable is set but empty (PORT=), then its default applies, not zero", () => {
    const config = loadConfig({ PORT: "", BETATEL_TIMEOUT_MS: "", RECONCILE_INTERVAL_MS: " ", LOG_LEVEL: "" });

    expect(config.PORT).toBe(3000);
    expect(config.BETATEL_TIMEOUT_MS).toBe(10_000);
    expect(config.RECONCILE_INTERVAL_MS).toBe(60_000);
    expect(config.LOG_LEVEL).toBe("info");
  });

  it("when production has everything it needs, then it loads", () => {
    expect(loadConfig(PRODUCTION).sandbox).toBe(false);
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
    { env: { BETATEL_API_KEY: "key" }, variable: "BETATEL_ACCOUNT_ID" },
    { env: { BETATEL_ACCOUNT_ID: "account" }, variable: "BETATEL_API_KEY" },
    { env: { ...PRODUCTION, API_KEYS: "" }, variable: "API_KEYS" },
    { env: { ...PRODUCTION, API_KEYS: " , " }, variable: "API_KEYS" },
    { env: { ...PRODUCTION, WEBHOOK_SECRET: "" }, variable: "WEBHOOK_SECRET" },
    { env: { ...PRODUCTION, BETATEL_API_KEY: "", BETATEL_ACCOUNT_ID: "" }, variable: "BETATEL_API_KEY" },
  ];

  it.each(wrong)("when $env, then it throws one line naming $variable", ({ env, variable }) => {
    const message = configError(env);

    expect(message).toMatch(/^Invalid configuration: /);
    expect(message).toContain(variable);
    expect(message).not.toContain("\n");
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
  });
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

  it("when production runs without WEBHOOK_SIGNING_SECRET, then a start warning says so", () => {
    expect(configWarnings(loadConfig(PRODUCTION)).join("\n")).toMatch(/WEBHOOK_SIGNING_SECRET is unset/);
    expect(
      configWarnings(loadConfig({ ...PRODUCTION, WEBHOOK_SIGNING_SECRET: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" })),
    ).toEqual([]);
    expect(configWarnings(loadConfig({}))).toEqual([]);
  });
});

describe("starting the server with a wrong configuration", () => {
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
