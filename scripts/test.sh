#!/usr/bin/env bash
# The project's test command (README, .ci/run): typecheck + build, lint, then every
# test file with Node's own test runner on the compiled output.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/test-deps.sh
rm -rf dist
npx tsc -p tsconfig.json
npx eslint .
mapfile -t files < <(find dist/test -name '*.test.js' | sort)
# --test-force-exit: a test file whose tests all finished must not hang the run because
# a library left a handle open (seen: a chokidar fs.watch after close() raced a new
# folder's initial read). The agent itself exits at most 1 s after a graceful stop.
exec node --test --test-force-exit --test-concurrency=2 --test-timeout=600000 "$@" "${files[@]}"
