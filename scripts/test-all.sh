#!/usr/bin/env bash
# The whole test suite, from a fresh clone: set-up, build, lint, typecheck, then every package's tests.
# Ends with one summary line "tests: N passed, N failed".
set -euo pipefail
cd "$(dirname "$0")/.."
export TURBO_TELEMETRY_DISABLED=1 DO_NOT_TRACK=1

bash scripts/setup.sh

echo "[test] build, lint, typecheck"
npx turbo run build lint typecheck --output-logs=errors-only

reports="$(mktemp -d)"
trap 'rm -rf "$reports"' EXIT
echo "[test] tests"
status=0
# --continue: a failing package does not stop the others; the summary counts every package's tests.
AMBIT_TEST_REPORT_DIR="$reports" npx turbo run test --concurrency=1 --continue --output-logs=full || status=$?
node scripts/test-summary.mjs "$reports" || status=1
exit $status
