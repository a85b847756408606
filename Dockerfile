# syntax=docker/dockerfile:1
# The ZeroTrace server image (`zerotrace`: API, workers, dashboard, feeds, admin).
#
#   docker build -t zerotrace:local .
#   docker run --rm -p 8080:8080 -v zerotrace-data:/var/lib/zerotrace zerotrace:local server
#
# Two stages: the build stage compiles the release binary with the toolchain image; the runtime
# stage is distroless (glibc and CA roots, no shell, no package manager) and runs as the
# unprivileged user 65532. The compose deployment (deploy/compose/docker-compose.yml) builds it.
# Checked in CI with hadolint and structural checks (crates/zerotrace/tests/deploy_compose.rs);
# no Docker engine runs there, so the image itself is not built in CI.

ARG RUST_VERSION=1.95.0

FROM rust:${RUST_VERSION}-slim-bookworm AS build
WORKDIR /src
# The whole workspace: its crates depend on one another. .dockerignore keeps target/ and .git out.
COPY . .
# Cargo's registry and target directory persist between builds (BuildKit cache mounts); the
# binary is copied out of the cached target directory, which is not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p zerotrace \
    && mkdir -p /out/var/lib/zerotrace \
    && cp target/release/zerotrace /out/zerotrace

FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
LABEL org.opencontainers.image.title="zerotrace" \
      org.opencontainers.image.description="ZeroTrace server: vulnerability management for fleets" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/zerotrace/zerotrace"
COPY --from=build /out/zerotrace /usr/bin/zerotrace
# The data directory (the SQLite database when no --database-url is given) belongs to the
# unprivileged user; mount a volume here.
COPY --from=build --chown=65532:65532 /out/var/lib/zerotrace /var/lib/zerotrace
ENV ZEROTRACE_DATA_DIR=/var/lib/zerotrace \
    ZEROTRACE_LISTEN=0.0.0.0:8080 \
    ZEROTRACE_LOG_FORMAT=json
USER 65532:65532
VOLUME ["/var/lib/zerotrace"]
EXPOSE 8080
# `docker run IMAGE server --role api`, `docker run IMAGE admin company create NAME`, …
ENTRYPOINT ["/usr/bin/zerotrace"]
CMD ["server"]
