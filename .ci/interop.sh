#!/usr/bin/env bash
# Interoperability: the OpenID Provider (docs/API.md §8) against relying-party libraries
# nobody here wrote, on the real binary, on both deployments:
#   - embedded:   APP_ENV=development, SQLite in a temp dir, in-process store;
#   - production: APP_ENV=production, a fresh PostgreSQL database, Redis with its own
#                 STORE_KEY_PREFIX, SMTP to a local sink (production requires SMTP_HOST).
# For each: the clients of tests/interop/clients.json (OIDC_CLIENTS_FILE), a user made with
# `logicredit-auth create-user`, then
#   - tests/interop/node:   openid-client 6 (certified RP, on oauth4webapi) + jose, node's
#                           test runner; and oauth4webapi alone for the FAPI 2.0 profile
#                           (PAR, private_key_jwt, DPoP) with a user of its own, who gets
#                           TOTP for SCA (fapi.test.mjs); and a payment initiation (RAR)
#                           confirmed through §9, its hash recomputed with `canonicalize`
#                           (payments.test.mjs);
#                           and openid-client once more against the service restarted
#                           with AUTH_POLICY=psd2 (psd2.test.mjs: enrollment gate, SCA);
#   - tests/interop/python: authlib (requests) + pytest, in a venv under target/.
# Installs the npm packages and the venv when missing or older than their lock files,
# builds the binary when missing or older than the sources, stops everything on exit, and
# fails (never skips) when PostgreSQL, Redis or a tool is missing.
#
#   .ci/interop.sh                              # exit 0 when every suite passed on both
#   INTEROP_BACKENDS=embedded .ci/interop.sh    # one deployment
#   INTEROP_REBUILD=1 .ci/interop.sh            # run `cargo build` even when it looks fresh
#   INTEROP_KEEP=1 .ci/interop.sh               # keep the temp dir (service logs) afterwards
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
started=$(date +%s)

BIN="$ROOT/target/debug/logicredit-auth"
VENV="$ROOT/target/interop-venv"
NODE_DIR="$ROOT/tests/interop/node"
PY_DIR="$ROOT/tests/interop/python"
CLIENTS_FILE="$ROOT/tests/interop/clients.json"
BACKENDS=${INTEROP_BACKENDS:-embedded,production}
USER_EMAIL="interop-user@example.com"
FAPI_USER_EMAIL="interop-fapi-user@example.com"
# The payment suite's account holder (enrolls TOTP itself; a code counts once per user).
PAYER_EMAIL="interop-payer@example.com"
USER_PASSWORD="Ledger quartz pelican 7193 harbour"

elapsed() { echo "$(( $(date +%s) - started )) s"; }
fatal() { echo "interop: FATAL: $*" >&2; exit 1; }

# --- what the suites need --------------------------------------------------------------
command -v node >/dev/null || fatal "node (>= 18) is required"
[ "$(node -p 'process.versions.node.split(".")[0]')" -ge 18 ] || fatal "node >= 18 is required, found $(node --version)"
if [ ! -d "$NODE_DIR/node_modules/openid-client" ] \
    || [ "$NODE_DIR/package-lock.json" -nt "$NODE_DIR/node_modules/.package-lock.json" ]; then
    echo "interop: installing openid-client, jose (npm ci)"
    (cd "$NODE_DIR" && npm ci --no-audit --no-fund)
fi
if [ ! -x "$VENV/bin/python" ] || [ ! -f "$VENV/.installed" ] \
    || [ "$PY_DIR/requirements.txt" -nt "$VENV/.installed" ]; then
    echo "interop: creating $VENV (authlib, requests, pytest)"
    if ! python3 -m venv --clear "$VENV" 2>/dev/null; then
        echo "interop: installing python3-venv (Debian package)"
        if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
        $SUDO apt-get update
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends python3-venv
        python3 -m venv --clear "$VENV"
    fi
    "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$PY_DIR/requirements.txt"
    touch "$VENV/.installed"
fi
# Missing, or older than the sources and the embedded pages: build.
if [ ! -x "$BIN" ] || [ -n "${INTEROP_REBUILD:-}" ] \
    || [ -n "$(find src assets clients/js/dist Cargo.toml Cargo.lock -newer "$BIN" -print -quit 2>/dev/null)" ]; then
    echo "interop: building the binary"
    cargo build
fi
if [[ ",$BACKENDS," == *",production,"* ]]; then
    pg_isready -h 127.0.0.1 -p 5432 -q || fatal "PostgreSQL at 127.0.0.1:5432 is not reachable (the production deployment needs it)"
    redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 || fatal "Redis at 127.0.0.1:6379 is not reachable (the production deployment needs it)"
fi
echo "interop: tools ready after $(elapsed)"

# --- services, stopped on exit -----------------------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/lcauth-interop.XXXXXX")
SERVER_PID=""
SINK_PID=""
DATABASE=""

stop_server() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    SERVER_PID=""
    if [ -n "$DATABASE" ]; then
        dropdb -h 127.0.0.1 -U postgres --force "$DATABASE" 2>/dev/null || true
        redis-cli -h 127.0.0.1 -p 6379 --scan --pattern "$DATABASE:*" 2>/dev/null \
            | xargs -r redis-cli -h 127.0.0.1 -p 6379 del >/dev/null 2>&1 || true
        DATABASE=""
    fi
}

cleanup() {
    local status=$?
    stop_server
    if [ -n "$SINK_PID" ] && kill -0 "$SINK_PID" 2>/dev/null; then
        kill -TERM "$SINK_PID" 2>/dev/null || true
        wait "$SINK_PID" 2>/dev/null || true
    fi
    if [ "$status" -ne 0 ]; then
        echo "interop: FAILED (exit $status) after $(elapsed)" >&2
        for log in "$WORK"/*/server.log; do
            [ -f "$log" ] || continue
            echo "interop: last lines of $log:" >&2
            tail -n 25 "$log" >&2 || true
        done
        echo "interop: kept $WORK for inspection (one server.log per deployment)" >&2
    elif [ -n "${INTEROP_KEEP:-}" ]; then
        echo "interop: kept $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
    node -e "const s=require('net').createServer();s.listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close();})"
}

node "$ROOT/tests/interop/smtp-sink.mjs" >"$WORK/smtp-sink.log" 2>&1 &
SINK_PID=$!
for _ in $(seq 1 50); do [ -s "$WORK/smtp-sink.log" ] && break; sleep 0.1; done
SMTP_PORT=$(head -n1 "$WORK/smtp-sink.log")
[[ "$SMTP_PORT" =~ ^[0-9]+$ ]] || fatal "the SMTP sink did not start: $(cat "$WORK/smtp-sink.log")"

# Starts the service for one deployment (and, when given, AUTH_POLICY) and creates the
# test users; sets BASE_URL.
start_service() {
    local backend=$1 policy=${2:-standard} dir="$WORK/$1-${2:-standard}" port
    mkdir -p "$dir/data"
    port=$(free_port)
    # The issuer and ORIGIN_URL are the served origin. localhost, as in .ci/e2e.sh: the
    # WebAuthn RP ID, and an http:// origin that production mode accepts (loopback).
    BASE_URL="http://localhost:$port"
    # A clean environment (no inherited REDIS_URL, SMTP_*, COOKIE_SECURE…), run from the
    # temp dir so no developer .env is read. COOKIE_SECURE keeps its default (true): the
    # session cookie is __Host-session with Secure, as in production; the suites' cookie
    # jars send it back over http://localhost as a browser does (a secure context).
    SERVICE_ENV=(
        PATH="$PATH" HOME="${HOME:-/root}"
        BIND_ADDR="127.0.0.1:$port"
        METRICS_ADDR=off
        DATA_DIR="$dir/data"
        ORIGIN_URL="$BASE_URL"
        FIDO_RP_ID=localhost
        OIDC_CLIENTS_FILE="$CLIENTS_FILE"
        ARGON2_MEMORY_KIB=1024 ARGON2_ITERATIONS=1
        RATE_LIMIT_AUTH=1000/600
        OUTBOX_POLL_INTERVAL_MS=100
        SMTP_HOST=127.0.0.1 SMTP_PORT="$SMTP_PORT" SMTP_TLS=none
        SMTP_FROM="Logicredit <no-reply@localhost>"
        AUTH_POLICY="$policy"
    )
    # Under `source .ci/coverage.sh env` (CI), the instrumented binary's profiles count too.
    if [ -n "${LLVM_PROFILE_FILE:-}" ]; then SERVICE_ENV+=(LLVM_PROFILE_FILE="$LLVM_PROFILE_FILE"); fi
    if [ "$backend" = embedded ]; then
        SERVICE_ENV+=(APP_ENV=development DATABASE_URL="sqlite://$dir/data/auth.db")
    elif [ "$backend" = production ]; then
        DATABASE="lcauth_interop_$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
        createdb -h 127.0.0.1 -U postgres "$DATABASE"
        SERVICE_ENV+=(
            APP_ENV=production
            DATABASE_URL="postgres://postgres@127.0.0.1:5432/$DATABASE"
            REDIS_URL=redis://127.0.0.1:6379
            STORE_KEY_PREFIX="$DATABASE:"
            TOTP_ENCRYPTION_KEY="$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')"
        )
    else
        fatal "unknown deployment $backend (INTEROP_BACKENDS: embedded,production)"
    fi
    for email in "$USER_EMAIL" "$FAPI_USER_EMAIL" "$PAYER_EMAIL"; do
        (cd "$dir" && printf '%s\n' "$USER_PASSWORD" \
            | env -i "${SERVICE_ENV[@]}" "$BIN" create-user --email "$email" --role user) \
            >>"$dir/create-user.log" 2>&1 \
            || fatal "create-user $email failed ($backend): $(tail -n 20 "$dir/create-user.log")"
    done
    (cd "$dir" && exec env -i "${SERVICE_ENV[@]}" "$BIN" serve) >"$dir/server.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 1 150); do
        if curl -fsS -o /dev/null "http://127.0.0.1:$port/readyz" 2>/dev/null; then break; fi
        kill -0 "$SERVER_PID" 2>/dev/null \
            || fatal "the service exited at start ($backend): $(tail -n 20 "$dir/server.log")"
        sleep 0.2
    done
    curl -fsS -o /dev/null "http://127.0.0.1:$port/readyz" \
        || fatal "the service did not become ready ($backend): $(tail -n 20 "$dir/server.log")"
    echo "interop: $backend ($policy) service up at $BASE_URL after $(elapsed) (log: $dir/server.log)"
}

# --- the suites, on each deployment ------------------------------------------------------
failed=()
IFS=',' read -r -a backend_list <<<"$BACKENDS"
for backend in "${backend_list[@]}"; do
    start_service "$backend"
    export INTEROP_BASE_URL="$BASE_URL" INTEROP_EMAIL="$USER_EMAIL" \
        INTEROP_PASSWORD="$USER_PASSWORD" INTEROP_DEPLOYMENT="$backend" \
        INTEROP_FAPI_EMAIL="$FAPI_USER_EMAIL" INTEROP_PAYER_EMAIL="$PAYER_EMAIL"

    echo "interop: [$backend] openid-client (node --test)"
    if ! (cd "$NODE_DIR" && node --test --test-timeout=60000 oidc.test.mjs); then
        failed+=("$backend/openid-client")
    fi
    echo "interop: [$backend] oauth4webapi, FAPI 2.0 (node --test)"
    if ! (cd "$NODE_DIR" && node --test --test-timeout=60000 fapi.test.mjs); then
        failed+=("$backend/oauth4webapi-fapi")
    fi
    echo "interop: [$backend] oauth4webapi, payment initiation with dynamic linking (node --test)"
    if ! (cd "$NODE_DIR" && node --test --test-timeout=120000 payments.test.mjs); then
        failed+=("$backend/oauth4webapi-payments")
    fi
    echo "interop: [$backend] authlib (pytest)"
    if ! (cd "$PY_DIR" && "$VENV/bin/python" -m pytest -q .); then
        failed+=("$backend/authlib")
    fi
    stop_server

    # The same provider under AUTH_POLICY=psd2: a fresh database, a user without a factor.
    start_service "$backend" psd2
    export INTEROP_BASE_URL="$BASE_URL"
    echo "interop: [$backend] openid-client under AUTH_POLICY=psd2 (node --test)"
    if ! (cd "$NODE_DIR" && node --test --test-timeout=60000 psd2.test.mjs); then
        failed+=("$backend/openid-client-psd2")
    fi
    stop_server
    echo "interop: [$backend] done after $(elapsed)"
done

if [ "${#failed[@]}" -ne 0 ]; then
    echo "interop: failing suites: ${failed[*]}" >&2
    exit 1
fi
echo "interop: passed in $(elapsed)"
