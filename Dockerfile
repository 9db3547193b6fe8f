# Logicredit Auth: one static-ish binary on a small Debian runtime.
#
#   docker build -t logicredit-auth .
#   docker run --rm -p 8000:8000 --env-file prod.env logicredit-auth
#
# The image defaults to APP_ENV=production, which refuses to start without a real
# configuration (TOTP_ENCRYPTION_KEY, DATABASE_URL=postgres://…, REDIS_URL, an https://
# ORIGIN_URL, …; see README "Production"). docker-compose.yml runs it as a development stack.
# The build needs only crates.io (the Swagger UI is vendored, nothing is downloaded from
# elsewhere) and works with the classic builder as well as BuildKit.

ARG RUST_VERSION=1.95

# --- Build -------------------------------------------------------------------------------
# Same Debian release as the runtime image, so the binary links against the same glibc.
FROM rust:${RUST_VERSION}-bookworm AS builder
WORKDIR /build

# Dependency layer: build every dependency against placeholder sources. This layer is
# rebuilt only when Cargo.toml or Cargo.lock change, not on every source edit.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && cargo build --release --locked \
    && rm -rf src

# The real sources. `touch` makes them newer than the placeholder build, so cargo rebuilds
# this crate (COPY keeps the files' original modification times).
COPY src ./src
COPY assets ./assets
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked \
    && install -m 0755 target/release/logicredit-auth /usr/local/bin/logicredit-auth \
    && /usr/local/bin/logicredit-auth --version

# --- Runtime -----------------------------------------------------------------------------
FROM debian:bookworm-slim AS runtime

# ca-certificates: TLS to SMTP, PostgreSQL, Redis and OAuth clients' jwks_uri. Nothing else:
# the health check below uses bash (already in the image), not curl.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*

# A fixed, non-root uid/gid (10001), so volume permissions are predictable.
RUN groupadd --system --gid 10001 logicredit \
    && useradd --system --uid 10001 --gid logicredit \
        --home-dir /var/lib/logicredit --shell /usr/sbin/nologin logicredit \
    && mkdir -p /var/lib/logicredit/data \
    && chown -R logicredit:logicredit /var/lib/logicredit

COPY --from=builder /usr/local/bin/logicredit-auth /usr/local/bin/logicredit-auth

# The working directory is where a `.env` would be read from (none is shipped) and where
# DATA_DIR (the development key and an embedded SQLite file, if used) lives.
WORKDIR /var/lib/logicredit
USER 10001:10001

ENV APP_ENV=production \
    BIND_ADDR=0.0.0.0:8000 \
    DATA_DIR=/var/lib/logicredit/data \
    RUST_LOG=info

EXPOSE 8000
# GET /metrics is served only on METRICS_ADDR (default 127.0.0.1:9100, inside the
# container). For a scraper outside it, set METRICS_ADDR=0.0.0.0:9100 and METRICS_TOKEN
# (production refuses the first without the second) and publish that port privately.

# Liveness: GET /healthz over a raw TCP connection (bash's /dev/tcp), on the port taken
# from BIND_ADDR, expecting HTTP status 200. Needs no curl/wget in the image. For load
# balancers, prefer GET /readyz (503 while PostgreSQL or Redis is unreachable).
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["bash", "-c", "addr=${BIND_ADDR:-0.0.0.0:8000} && exec 3<>\"/dev/tcp/127.0.0.1/${addr##*:}\" && printf 'GET /healthz HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n' >&3 && read -r -t 4 _ status _ <&3 && [ \"$status\" = 200 ]"]

# SIGTERM (docker stop) stops accepting connections, drains in-flight requests and exits 0.
ENTRYPOINT ["logicredit-auth"]
CMD ["serve"]
