#!/usr/bin/env bash
# The browser SDK (clients/js): compiles the TypeScript, checks that the compiled files
# the service embeds (clients/js/dist, served at /ui/sdk.js and /ui/pages.js) are exactly
# what the sources compile to, and runs the SDK's unit tests (node's test runner).
set -euo pipefail
cd "$(dirname "$0")/../clients/js"
command -v node >/dev/null || { echo "sdk: FATAL: node (>= 20) is required" >&2; exit 1; }
if [ ! -x node_modules/.bin/tsc ]; then
    echo "sdk: installing typescript (npm)"
    npm ci --no-audit --no-fund
fi
# Compiled aside and compared, so dist/ keeps its timestamps (a rewrite would make the
# service binary look older than its embedded sources and e2e.sh would rebuild it).
fresh=$(mktemp -d)
trap 'rm -rf "$fresh"' EXIT
node_modules/.bin/tsc -p tsconfig.json --outDir "$fresh"
if ! diff -r "$fresh" dist >/dev/null; then
    echo "sdk: FATAL: clients/js/dist is not what clients/js/src compiles to: run" >&2
    echo "     (cd clients/js && npm run build) and commit dist/" >&2
    diff -r "$fresh" dist | head -20 >&2 || true
    exit 1
fi
npm test
