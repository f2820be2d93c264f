# syntax=docker/dockerfile:1
# Ambit's container images, one target per component (see charts/ambit/README.md):
#   docker build --target controller -t <registry>/ambit/controller:0.1.0 .
#   docker build --target ztunnel    -t <registry>/ambit/ztunnel:0.1.0 .
#   docker build --target cni-agent  -t <registry>/ambit/cni-agent:0.1.0 .
# The chart's image.repository is then "<registry>/ambit".

# --- build: install the workspace, compile the native addon and the TypeScript packages ------------------------
FROM node:20-bookworm AS build
# g++ and make build @ambit/sys (N-API addon) during `npm ci`; python3 lets node-gyp run (the addon's build
# falls back to a plain g++ invocation without it).
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends g++ make python3 \
 && rm -rf /var/lib/apt/lists/*
ENV TURBO_TELEMETRY_DISABLED=1 DO_NOT_TRACK=1 npm_config_audit=false npm_config_fund=false
WORKDIR /src
COPY . .
RUN npm ci
RUN npx turbo run build --filter=@ambit/controller... --filter=@ambit/ztunnel... --filter=@ambit/cni-agent...
# Only what the programs load at run time.
RUN npm prune --omit=dev

# --- runtime bases ----------------------------------------------------------------------------------------------
FROM node:20-bookworm-slim AS runtime
ENV NODE_ENV=production
WORKDIR /app

# ztunnel and the CNI agent program iptables rules and routes inside pod network namespaces.
FROM runtime AS runtime-net
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends iptables iproute2 \
 && rm -rf /var/lib/apt/lists/*

# --- component targets (the workspace links node_modules/@ambit/* → packages/*, so both are copied) ----------
FROM runtime AS controller
COPY --from=build /src/package.json ./package.json
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/packages ./packages
ENTRYPOINT ["node", "/app/packages/controller/dist/main.js"]

FROM runtime-net AS ztunnel
COPY --from=build /src/package.json ./package.json
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/packages ./packages
ENTRYPOINT ["node", "/app/packages/ztunnel/dist/main.js"]

FROM runtime-net AS cni-agent
COPY --from=build /src/package.json ./package.json
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/packages ./packages
ENTRYPOINT ["node", "/app/packages/cni-agent/dist/main.js"]
