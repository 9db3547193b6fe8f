#!/usr/bin/env bash
# End-to-end in headless Chromium with a virtual authenticator, against the real binary:
#   - tests/e2e/ui.spec.mjs: the hosted pages (/ui/), the whole story of a customer, on both
#     deployments (it starts its own services, SQLite and PostgreSQL + Redis, with an SMTP
#     sink); screenshots of every page in target/e2e-artifacts/ (kept: CI's artifacts);
#   - tests/e2e/oauth.spec.mjs: the OpenID Provider's login and consent pages, driven by a
#     relying party simulated in the test (PKCE, callback, code exchange), on both
#     deployments too (tests/e2e/harness.mjs is what they share);
#   - tests/e2e/confirm.spec.mjs: the payment confirmation page (/ui/confirm, PSD2 dynamic
#     linking): the payment shown before any WebAuthn call, passkey and TOTP confirmation,
#     the signed proof checked against the JWKS, on both deployments;
#   - tests/e2e/consent-payment.spec.mjs: a third party's payment (RFC 9396
#     payment_initiation) through the hosted consent page: the payment shown before any
#     WebAuthn call, Allow → transaction_confirmation_required → passkey confirmation on the
#     page → code; the token response, access token and introspection carry the details and
#     the RFC 8785 tx_hash; Deny → access_denied; on both deployments;
#   - tests/e2e/psd2.spec.mjs: the pages under AUTH_POLICY=psd2: the one-time code field on
#     the login page, the set-up of a second factor a new account is sent to (and back to
#     where it was going), one message for every failed sign-in; on both deployments;
#   - tests/e2e/docs.spec.mjs: /docs (Swagger UI) renders with no network.
# Installs Chromium (Debian package) and the test's npm packages (tests/e2e) when missing,
# builds the binary when missing or older than the sources, and stops everything on exit.
#
#   .ci/e2e.sh                 # exit 0 when every scenario passed
#   E2E_REBUILD=1 .ci/e2e.sh   # run `cargo build` even when the binary looks up to date
#   E2E_KEEP=1 .ci/e2e.sh      # keep the temp dir (server log, screenshots) afterwards
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
started=$(date +%s)

CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
BIN="$ROOT/target/debug/logicredit-auth"

# --- what the test needs ---------------------------------------------------------------
if [ ! -x "$CHROMIUM" ]; then
    echo "e2e: installing Chromium (Debian package)"
    if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends chromium
fi
command -v node >/dev/null || { echo "e2e: FATAL: node (>= 18) is required" >&2; exit 1; }
if [ ! -d tests/e2e/node_modules/playwright-core ] || [ ! -d tests/e2e/node_modules/smtp-server ] \
    || [ ! -d tests/e2e/node_modules/axe-core ] || [ ! -d tests/e2e/node_modules/canonicalize ]; then
    echo "e2e: installing playwright-core, smtp-server, mailparser, axe-core, canonicalize (npm)"
    # Chromium comes from Debian; Playwright must not try to download its own browsers.
    (cd tests/e2e && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund)
fi
# Missing, or older than the sources and the embedded page: build.
if [ ! -x "$BIN" ] || [ -n "${E2E_REBUILD:-}" ] \
    || [ -n "$(find src assets clients/js/dist Cargo.toml Cargo.lock -newer "$BIN" -print -quit 2>/dev/null)" ]; then
    echo "e2e: building the binary"
    cargo build --bin logicredit-auth
fi

# --- the service -----------------------------------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/lcauth-e2e.XXXXXX")
SERVER_PID=""
cleanup() {
    local status=$?
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    if [ "$status" -ne 0 ]; then
        echo "e2e: FAILED (exit $status) after $(( $(date +%s) - started )) s" >&2
        if [ -f "$WORK/server.log" ]; then
            echo "e2e: last lines of the service log ($WORK/server.log):" >&2
            tail -n 25 "$WORK/server.log" >&2 || true
        fi
        echo "e2e: kept $WORK for inspection" >&2
    elif [ -n "${E2E_KEEP:-}" ]; then
        echo "e2e: kept $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

PORT=$(node -e "const s=require('net').createServer();s.listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close();})")
# WebAuthn: the RP ID is "localhost", so the page must be opened at http://localhost:PORT,
# and ORIGIN_URL must be exactly that origin (port included).
BASE_URL="http://localhost:$PORT"
mkdir -p "$WORK/data" "$WORK/artifacts"

# A clean environment (no inherited REDIS_URL, SMTP_*, COOKIE_SECURE…), and the temp dir as
# working directory so no developer .env is read. COOKIE_SECURE keeps its default (true):
# the session cookie is __Host-session with Secure, which Chromium accepts on
# http://localhost (a secure context); the test checks that.
(
    cd "$WORK"
    exec env -i PATH="$PATH" HOME="${HOME:-/root}" \
        APP_ENV=development \
        BIND_ADDR="127.0.0.1:$PORT" \
        METRICS_ADDR=127.0.0.1:0 \
        DATA_DIR="$WORK/data" \
        DATABASE_URL="sqlite://$WORK/data/auth.db" \
        ORIGIN_URL="$BASE_URL" \
        FIDO_RP_ID=localhost \
        ARGON2_MEMORY_KIB=1024 ARGON2_ITERATIONS=1 \
        RATE_LIMIT_AUTH=1000/600 \
        OUTBOX_POLL_INTERVAL_MS=100 \
        "$BIN" serve
) >"$WORK/server.log" 2>&1 &
SERVER_PID=$!

for _ in $(seq 1 150); do
    if curl -fsS -o /dev/null "http://127.0.0.1:$PORT/healthz" 2>/dev/null; then break; fi
    kill -0 "$SERVER_PID" 2>/dev/null || { echo "e2e: FATAL: the service exited at start" >&2; exit 1; }
    sleep 0.2
done
curl -fsS -o /dev/null "http://127.0.0.1:$PORT/healthz" || { echo "e2e: FATAL: the service did not become healthy" >&2; exit 1; }
echo "e2e: service up at $BASE_URL (log: $WORK/server.log) after $(( $(date +%s) - started )) s"

# --- the browser test ------------------------------------------------------------------
ARTIFACTS="$ROOT/target/e2e-artifacts"
rm -rf "$ARTIFACTS" && mkdir -p "$ARTIFACTS"
E2E_BINARY="$BIN" \
E2E_ARTIFACTS="$ARTIFACTS" \
E2E_CHROMIUM="$CHROMIUM" \
    node tests/e2e/ui.spec.mjs
E2E_BINARY="$BIN" \
E2E_ARTIFACTS="$ARTIFACTS" \
E2E_CHROMIUM="$CHROMIUM" \
    node tests/e2e/oauth.spec.mjs
E2E_BINARY="$BIN" \
E2E_ARTIFACTS="$ARTIFACTS" \
E2E_CHROMIUM="$CHROMIUM" \
    node tests/e2e/confirm.spec.mjs
E2E_BINARY="$BIN" \
E2E_ARTIFACTS="$ARTIFACTS" \
E2E_CHROMIUM="$CHROMIUM" \
    node tests/e2e/consent-payment.spec.mjs
E2E_BINARY="$BIN" \
E2E_ARTIFACTS="$ARTIFACTS" \
E2E_CHROMIUM="$CHROMIUM" \
    node tests/e2e/psd2.spec.mjs
E2E_BASE_URL="$BASE_URL" \
E2E_ARTIFACTS="$WORK/artifacts" \
E2E_CHROMIUM="$CHROMIUM" \
    node tests/e2e/docs.spec.mjs

echo "e2e: passed in $(( $(date +%s) - started )) s"
