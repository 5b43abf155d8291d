# Production image: the same steps as .ci/run (npm ci from the lockfile, prisma generate), then
# migrations and the server as a non-root user. Nothing is downloaded at build or start beyond npm packages.
FROM node:20-bookworm-slim AS build
WORKDIR /app
ENV CHECKPOINT_DISABLE=1
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY prisma ./prisma
COPY prisma.config.ts tsconfig.json ./
COPY src ./src
RUN npm run generate && npm run typecheck && npm prune --omit=dev

FROM node:20-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production PORT=3000 CHECKPOINT_DISABLE=1
COPY --from=build --chown=node:node /app /app
USER node
EXPOSE 3000
# Migrations run first (safe with several instances starting together: they take an advisory lock),
# then the server, which checks them again on start.
# Heap flags as in `npm run serve`: peak RSS stays near 130 MiB under the benchmark's load (README, Performance).
CMD ["sh", "-c", "node --import tsx src/db/migrate-cli.ts && exec node --max-old-space-size=160 --max-semi-space-size=4 --import tsx src/server.ts"]
