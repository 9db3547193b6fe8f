#!/usr/bin/env bash
# Runs the Postman collection's "CI flow" folder with newman against a fresh instance of the
# debug binary: a temporary SQLite database and data folder, an admin created with the CLI,
# a free port chosen by the OS. Leaves nothing behind (the temporary folder, including npm's
# cache, is removed and the server is stopped on every exit path). Exits non-zero when any
# assertion or request fails.
#
#   .ci/newman.sh                 # after `cargo test` (or `cargo build`)
#   NEWMAN=/path/to/newman .ci/newman.sh    # use an installed newman instead of npm install
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

collection="$repo/postman_collection.json"
folder="CI flow"
bin="${CARGO_TARGET_DIR:-$repo/target}/debug/logicredit-auth"
case "$bin" in /*) ;; *) bin="$repo/$bin" ;; esac

tmp=$(mktemp -d "${TMPDIR:-/tmp}/logicredit-newman.XXXXXX")
server_pid=""
cleanup() {
    local status=$?
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$server_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    if [ "$status" -ne 0 ] && [ -f "$tmp/server.log" ]; then
        echo "--- last lines of the server log ---" >&2
        tail -n 40 "$tmp/server.log" >&2 || true
    fi
    rm -rf "$tmp"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [ ! -x "$bin" ]; then
    echo "$bin is missing; building it"
    cargo build --bin logicredit-auth
fi

# newman: an installed one if given, else a throwaway install (npm cache included) in $tmp.
if [ -n "${NEWMAN:-}" ]; then
    newman=$NEWMAN
else
    echo "installing newman into a temporary folder"
    npm_config_cache="$tmp/npm-cache" npm_config_update_notifier=false \
        npm install --prefix "$tmp/npm" --no-audit --no-fund --loglevel=error newman@6 >/dev/null
    newman="$tmp/npm/node_modules/.bin/newman"
fi

admin_email="ci-admin@example.com"
admin_password="orchid basalt compass 7305 ember"

# The service's whole configuration, and nothing inherited from the caller's environment
# (no REDIS_URL, SMTP_HOST, DATABASE_URL, ... of the developer's shell; no .env either:
# it runs in $tmp).
service_env=(
    env -i
    PATH="$PATH"
    HOME="$tmp"
    APP_ENV=development
    BIND_ADDR=127.0.0.1:0
    METRICS_ADDR=127.0.0.1:0
    DATABASE_URL="sqlite://$tmp/data/auth.db"
    DATA_DIR="$tmp/data"
    COOKIE_SECURE=false
    ARGON2_MEMORY_KIB=1024
    ARGON2_ITERATIONS=1
    RATE_LIMIT_AUTH=10000/600
    RUST_LOG=info
)

(cd "$tmp" && printf '%s\n' "$admin_password" \
    | "${service_env[@]}" RUST_LOG=warn "$bin" create-user --email "$admin_email" --role admin)

(cd "$tmp" && exec "${service_env[@]}" "$bin" serve >"$tmp/server.log" 2>&1) &
server_pid=$!

# BIND_ADDR and METRICS_ADDR port 0: the OS picks free ports; the service logs the
# addresses it bound ("serving", then "serving metrics" just before it).
address=""
for _ in $(seq 1 300); do
    address=$(grep '"serving"' "$tmp/server.log" | grep -o '"address":"[^"]*"' | head -n1 | cut -d'"' -f4 || true)
    [ -n "$address" ] && break
    kill -0 "$server_pid" 2>/dev/null || { echo "the service exited during start-up" >&2; exit 1; }
    sleep 0.1
done
if [ -z "$address" ]; then
    echo "the service did not start within 30 s" >&2
    exit 1
fi
metrics_address=$(grep '"serving metrics"' "$tmp/server.log" | grep -o '"address":"[^"]*"' | head -n1 | cut -d'"' -f4 || true)
if [ -z "$metrics_address" ]; then
    echo "the service did not log its metrics address" >&2
    exit 1
fi
echo "service listening on $address (metrics on $metrics_address)"

"$newman" run "$collection" \
    --folder "$folder" \
    --env-var "BASE_URL=http://$address" \
    --env-var "METRICS_URL=http://$metrics_address" \
    --env-var "CI_ADMIN_EMAIL=$admin_email" \
    --env-var "CI_ADMIN_PASSWORD=$admin_password" \
    --reporters cli \
    --timeout-request 15000 \
    --color off

echo "newman: the CI flow passed"
