# Production image. CI replays this file without a Docker daemon (scripts/replay-dockerfile.ts runs the build stage's
# RUN lines in a clean clone, assembles the COPY --from lines, then runs CMD and HEALTHCHECK as a non-root user),
# so keep every RUN a single line and every runtime COPY a plain `COPY --from=build /app/<path> ./<path>`.
# Base not pinned by digest: no registry was reachable where this was written to resolve one. Pin it in your
# build (node:24-bookworm-slim@sha256:...) and let a bot update it.
FROM node:24-bookworm-slim AS build
WORKDIR /app
ENV CHECKPOINT_DISABLE=1 PRISMA_HIDE_UPDATE_MESSAGE=1
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY prisma ./prisma
COPY prisma.config.ts tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build
# --omit=optional too: the Prisma CLI and TypeScript are optional peers of @prisma/client, which npm keeps with
# --omit=dev alone (111 MB of node_modules instead of 231 MB). Nothing the service imports is optional.
RUN npm prune --omit=dev --omit=optional --no-audit --no-fund

FROM node:24-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production PORT=3000
# Owned by root, readable by all: the runtime user cannot change the code. Nothing in /app is written at run time.
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY --from=build /app/prisma/migrations ./prisma/migrations
USER node
EXPOSE 3000
# /readyz answers 200 once the database answers; plain node, no curl in the image.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 CMD ["node", "-e", "fetch(`http://127.0.0.1:${process.env.PORT}/readyz`).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# Exec form: node is PID 1 and receives SIGTERM itself (graceful shutdown). It applies pending migrations once,
# then serves. Heap flags as in `npm run serve` (docs/performance.md).
CMD ["node", "--max-old-space-size=160", "--max-semi-space-size=4", "dist/server.js"]
