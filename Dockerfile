# syntax=docker/dockerfile:1
# The Barge controller image, for those who build with Docker. `make image`
# builds the same image without a container engine (hack/image/build.sh, an
# OCI image layout in target/image/, reproducible to the byte); this file
# builds it the same way: a static musl build of barge (cargo profile
# "image"), the kustomize and helm its kustomize-build and helm-template steps
# run, CA certificates, user 65532, the same environment, entry point and
# command. Only the base differs: distroless's static image here (which
# holds the same CA bundle, passwd entry and /tmp), files of its own there.
#
#   docker build -t barge .
#   docker run --rm barge --help
#
# Build stage on Debian 12 (bookworm), whose musl-tools compiles the vendored
# C code (OpenSSL, libgit2, zlib) for musl; the binary needs no libc.
ARG RUST_VERSION=1
FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends musl-tools \
    && rm -rf /var/lib/apt/lists/* \
    && rustup target add "$(uname -m)-unknown-linux-musl"
WORKDIR /src
# The context holds only what the build needs (see .dockerignore).
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    target="$(uname -m)-unknown-linux-musl" \
    && export "CC_$(echo "$target" | tr - _)=musl-gcc" \
    && cargo build --profile image --locked --target "$target" --bin barge \
    && install -D -m 0755 "target/$target/image/barge" /out/barge

# kustomize and helm from the Go module proxy, at the versions the wrapper
# modules in hack/control-plane pin (the same binaries the tests run).
ARG GO_VERSION=1.26
FROM docker.io/library/golang:${GO_VERSION}-bookworm AS tools
WORKDIR /src
COPY hack/control-plane/helm/ helm/
COPY hack/control-plane/kustomize/ kustomize/
ENV CGO_ENABLED=0 GOFLAGS=-mod=mod GOTOOLCHAIN=local
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    cd /src/helm \
    && helm=$(go list -m -f '{{.Version}}' helm.sh/helm/v3) \
    && go build -trimpath -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$helm" \
       -o /out/helm helm.sh/helm/v3/cmd/helm \
    && cd /src/kustomize \
    && go build -trimpath -ldflags "-s -w" -o /out/kustomize sigs.k8s.io/kustomize/kustomize/v5 \
    && /out/helm version --short && /out/kustomize version

# No libc, no shell, no package manager: CA certificates, /etc/passwd, /tmp.
FROM gcr.io/distroless/static-debian12:nonroot
LABEL org.opencontainers.image.title="barge" \
      org.opencontainers.image.description="Kubernetes promotion controller" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/barge /barge
COPY --from=tools /out/kustomize /out/helm /usr/local/bin/
ENV BARGE_KUSTOMIZE=/usr/local/bin/kustomize \
    BARGE_HELM=/usr/local/bin/helm \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
# distroless's "nonroot" user; the chart runs the Pod as this user too.
USER 65532:65532
# /healthz, /readyz and /metrics (BARGE_HTTP_ADDR).
EXPOSE 8080
ENTRYPOINT ["/barge"]
CMD ["run"]
