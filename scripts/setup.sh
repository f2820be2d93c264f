#!/usr/bin/env bash
# Installs everything the tests, the demo and the benchmarks need on a fresh machine, idempotently:
# Debian packages (when missing), npm packages (when the lockfile changed), and the Kubernetes binaries
# (built once into ~/.cache/ambit). Safe to run again; a warm run takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
export TURBO_TELEMETRY_DISABLED=1 DO_NOT_TRACK=1

step() { echo "[setup] $*"; }

# --- Debian packages -----------------------------------------------------------------------------------
need=()
command -v iptables >/dev/null || need+=(iptables)
command -v ip >/dev/null || need+=(iproute2)
command -v g++ >/dev/null || need+=(g++)
command -v make >/dev/null || need+=(make)
command -v tcpdump >/dev/null || need+=(tcpdump) # the L4 suite checks that the wire carries only TLS
command -v unzip >/dev/null || need+=(unzip)     # scripts/get-helm.sh extracts helm from an npm package's zip
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then echo "[setup] missing ${need[*]}: install them (needs root): apt-get install ${need[*]}" >&2; exit 1; fi
  step "apt-get install ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# --- npm packages --------------------------------------------------------------------------------------
lock_hash="$(sha256sum package-lock.json | cut -c1-16)"
if [ "$(cat node_modules/.ambit-lock-hash 2>/dev/null)" != "$lock_hash" ]; then
  step "npm ci"
  npm ci --no-audit --no-fund
  echo "$lock_hash" > node_modules/.ambit-lock-hash
else
  step "npm packages up to date"
fi

# --- Kubernetes binaries for the local cluster (built once from the Go module proxy; ~15 min cold) -----
command -v go >/dev/null || { echo "[setup] Go >= 1.24 is needed to build the local cluster's Kubernetes binaries" >&2; exit 1; }
step "Kubernetes binaries"
bash packages/localcluster/scripts/build-kube-binaries.sh | tail -1

# --- helm (from the npm registry; see scripts/get-helm.sh) ---------------------------------------------
step "helm"
bash scripts/get-helm.sh | tail -1
