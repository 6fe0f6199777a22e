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
exec node --test --test-concurrency=2 --test-timeout=600000 "$@" "${files[@]}"
