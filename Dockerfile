# One image for every Mailplane process; a Deployment picks the command (`operator`, `api`,
# `sender`, `smtp`, `submission`, `migrate`). Build: docker build -t mailplane .

# --- build: compile TypeScript (isolated-vm ships prebuilt binaries for Node 24) --------------
FROM node:24-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-fund --no-audit
COPY tsconfig.json tsconfig.build.json ./
COPY api api
COPY sender sender
COPY operator operator
COPY smtp smtp
COPY submission submission
COPY cmd cmd
COPY lib lib
# The CRD schemas: `mailplane apply` validates manifests against them (dist/lib → ../../crds).
COPY charts/mailplane/files/crds crds
# Production dependencies only. typescript survives the prune as cosmiconfig's optional peer,
# loaded only for a TypeScript graphile-worker config file, which the image has none of.
RUN npm run build \
    && npm prune --omit=dev \
    && rm -rf node_modules/typescript node_modules/.bin/tsc node_modules/.bin/tsserver

# --- run: no compiler, no npm cache, a non-root user ------------------------------------------
FROM node:24-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /src/package.json ./
COPY --from=build /src/node_modules node_modules
COPY --from=build /src/dist dist
COPY --from=build /src/crds crds
# The chart runs every pod as this uid with a read-only root filesystem and /tmp on an emptyDir.
USER 10001:10001
# isolated-vm (the template sandbox) needs Node's startup snapshot off.
ENTRYPOINT ["node", "--no-node-snapshot", "dist/cmd/mailplane.js"]
CMD ["--help"]
