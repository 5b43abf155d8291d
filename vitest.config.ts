import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    globalSetup: ["test/support/global-setup.ts"],
    include: ["test/**/*.test.ts"],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Each file gets its own app and pool; a few files at a time keep 2 cores and Postgres busy, not swamped.
    maxWorkers: 3,
    // On the embedded database, each file starts its own PGlite: run them one by one.
    fileParallelism: process.env.TEST_DATABASE !== "embedded",
  },
});
