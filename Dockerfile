# One image holds both services; the container's command picks which one runs:
#   docker run IMAGE ingest      (the default)
#   docker run IMAGE processor
# docker-compose.yml builds it once and starts it as the processor and two ingest replicas.

# ---------------------------------------------------------------------------------------
# Builder: compiles the release binaries.
# ---------------------------------------------------------------------------------------
FROM rust:1.95-bookworm AS builder

# diesel's PostgreSQL backend links against libpq.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libpq-dev \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src

# Dependencies first, in their own layer: only the manifests and the lock file are copied,
# with empty stand-ins for every workspace member's sources. This layer is rebuilt only
# when a manifest or Cargo.lock changes, not on every edit of the code. Every member listed
# in the root Cargo.toml needs its manifest and a stand-in here, or the workspace does not
# resolve; the `tests` and benchmark crates are among them even though the image does not
# build them.
COPY Cargo.toml Cargo.lock ./
COPY shared/Cargo.toml shared/
COPY ingest/Cargo.toml ingest/
COPY processor/Cargo.toml processor/
COPY tests/Cargo.toml tests/
COPY bench/Cargo.toml bench/
COPY bench-api/Cargo.toml bench-api/
RUN for member in shared ingest processor tests bench bench-api; do \
        mkdir -p "$member/src" \
        && touch "$member/src/lib.rs" \
        && echo 'fn main() {}' > "$member/src/main.rs"; \
    done \
    && cargo build --release --locked -p dlr-ingest -p dlr-processor --bins

# The real sources. The processor embeds migrations/ and docs/openapi.json at compile
# time. The benchmark and test members are copied so the workspace resolves; only the
# two services are built.
COPY shared shared
COPY ingest ingest
COPY processor processor
COPY tests tests
COPY bench bench
COPY bench-api bench-api
COPY migrations migrations
COPY docs docs

# COPY keeps the files' original modification times, which can be older than the
# stand-ins just compiled; touching the crate roots makes cargo rebuild the workspace
# crates instead of reusing the empty ones.
RUN touch shared/src/lib.rs ingest/src/lib.rs ingest/src/main.rs \
        processor/src/lib.rs processor/src/main.rs \
    && cargo build --release --locked -p dlr-ingest -p dlr-processor --bins

# ---------------------------------------------------------------------------------------
# Runtime: a slim Debian with the two binaries, running as an unprivileged user.
# ---------------------------------------------------------------------------------------
FROM debian:bookworm-slim

# libpq5 for the processor's database connections, ca-certificates for TLS to managed
# services, curl for the container health checks in docker-compose.yml.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libpq5 ca-certificates curl \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 dlr \
    && useradd --system --uid 10001 --gid dlr --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin dlr

COPY --from=builder /src/target/release/ingest /src/target/release/processor /usr/local/bin/

# Numeric, so that orchestrators can verify the user is not root without reading
# /etc/passwd.
USER 10001:10001

# Ingest listens on 8080 (INGEST_LISTEN), the processor's health endpoint on 8081
# (PROCESSOR_LISTEN). Both stop cleanly on SIGTERM, Docker's default stop signal.
EXPOSE 8080 8081

CMD ["ingest"]
