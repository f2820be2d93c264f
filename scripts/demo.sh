#!/usr/bin/env bash
# The demo, from a fresh clone: set-up, build, then a 2-node local cluster with the sample app
# (packages/localcluster/demo/sample-app.yaml) and the answers of its client. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
export TURBO_TELEMETRY_DISABLED=1 DO_NOT_TRACK=1
bash scripts/setup.sh
npx turbo run build --output-logs=errors-only
node packages/localcluster/dist/demo.js
