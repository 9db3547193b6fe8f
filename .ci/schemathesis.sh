#!/usr/bin/env bash
# Contract check (docs/API.md §7, OpenAPI): schemathesis generates requests from /openapi.json
# and sends them to a running instance; any 5xx, or a response that does not match the
# document, fails the run. The seed is fixed so a failure reproduces; change it to explore.
set -euo pipefail
cd "$(dirname "$0")/.."

binary=target/debug/logicredit-auth
[ -x "$binary" ] || cargo build
work=$(mktemp -d)
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q schemathesis

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
env -i PATH="$PATH" HOME="$work" \
    BIND_ADDR="127.0.0.1:$port" METRICS_ADDR=127.0.0.1:0 DATA_DIR="$work/data" DATABASE_URL="sqlite://$work/data/auth.db" \
    RATE_LIMIT_AUTH=1000000/600 ARGON2_MEMORY_KIB=1024 ARGON2_ITERATIONS=1 \
    COOKIE_SECURE=false RUST_LOG=warn \
    "$binary" serve > "$work/server.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 1 50); do
    curl -fsS -o /dev/null "http://127.0.0.1:$port/readyz" && break
    sleep 0.2
done

"$work/venv/bin/st" run "http://127.0.0.1:$port/openapi.json" \
    --checks not_a_server_error,response_schema_conformance \
    --max-examples 25 --workers 2 --seed 20261125
