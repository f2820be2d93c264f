#!/usr/bin/env bash
# The demo: a local cluster with the mesh installed and a sample app. Not built yet: the local cluster
# (packages/localcluster) and the mesh programs are still in progress; see the Status table in README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "The demo needs the local cluster and the mesh programs, which are not built yet (see README.md, Status)." >&2
exit 1
