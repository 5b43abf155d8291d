// Prisma CLI config. The JS schema engine with the pg adapter keeps `prisma migrate` offline:
// no engine binary is downloaded (see the README's "Database" section).
import { PrismaPg } from "@prisma/adapter-pg";
import { defineConfig } from "prisma/config";

const defaultUrl = "postgresql://postgres@127.0.0.1:5432/postgres";
// `prisma generate` only parses the schema, but Prisma 6 refuses to read it while env("DATABASE_URL") is unset.
process.env.DATABASE_URL ??= defaultUrl;

export default defineConfig({
  experimental: { adapter: true },
  engine: "js",
  schema: "prisma/schema.prisma",
  migrations: { path: "prisma/migrations" },
  adapter: async () => new PrismaPg({ connectionString: process.env.DATABASE_URL ?? defaultUrl }),
});
