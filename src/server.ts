import { type Config, ConfigError, loadConfig } from "./config.ts";
import { loadEnvFile } from "./env-file.ts";
import { createLogger } from "./http/logging.ts";
import { createService } from "./service.ts";

function readConfig(): Config {
  try {
    loadEnvFile();
    return loadConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(error.message);
      process.exit(1);
    }
    throw error;
  }
}

const config = readConfig();
const logger = createLogger(config.LOG_LEVEL);

// A database that cannot be opened or migrated (a changed migration, a failed one) stops the start: one log line.
const service = await createService(config, { logger }).catch((error: unknown) => {
  logger.fatal({ err: error }, `cannot start: ${(error as Error).message}`);
  process.exit(1);
});

async function shutdown(signal: string) {
  process.exit(await service.stop(signal));
}
process.on("SIGTERM", () => void shutdown("SIGTERM"));
process.on("SIGINT", () => void shutdown("SIGINT"));

await service.start().catch((error: unknown) => {
  logger.fatal({ err: error }, `cannot listen on ${config.HOST ?? "every interface"}, port ${config.PORT}`);
  process.exit(1);
});
