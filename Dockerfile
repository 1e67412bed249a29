# syntax=docker/dockerfile:1
# The Barge controller image: the release binary alone on distroless.
#
#   docker build -t barge .
#   docker run --rm barge --help
#
# Build stage on Debian 12 (bookworm), the same glibc as the runtime image.
ARG RUST_VERSION=1
FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
# The context holds only what the build needs (see .dockerignore).
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin barge \
    && install -D -m 0755 target/release/barge /out/barge

# glibc and libgcc only (TLS is rustls); no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="barge" \
      org.opencontainers.image.description="Kubernetes promotion controller" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/barge /barge
# distroless's "nonroot" user; the chart runs the Pod as this user too.
USER 65532:65532
# /healthz, /readyz and /metrics (BARGE_HTTP_ADDR).
EXPOSE 8080
ENTRYPOINT ["/barge"]
CMD ["run"]
