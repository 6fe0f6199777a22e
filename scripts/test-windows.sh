#!/usr/bin/env bash
# The Windows test lane (`npm run test:windows`): the built tests under the real Windows
# node.exe in wine. Builds dist/ first when it is missing; see scripts/test-windows.mjs.
set -euo pipefail
cd "$(dirname "$0")/.."
exec node scripts/test-windows.mjs "$@"
