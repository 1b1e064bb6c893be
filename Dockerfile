# syntax=docker/dockerfile:1
# flagpole container image: a static musl binary on an empty base.
#
#   docker build -t flagpole .
#   docker run --rm -p 8013:8013 -p 8014:8014 flagpole            # embedded example flags
#   docker run --rm -v "$PWD/flags:/flags:ro" -p 8013:8013 flagpole start --uri file:/flags/flags.json
#
# The runtime image holds only /flagpole and the CA bundle (for S3/SQS over TLS). It has no
# shell or curl: health checks run `/flagpole healthcheck`, which probes the management port.

ARG RUST_VERSION=1.95

# ---- builder: Debian bookworm with the musl target ----
# Builds natively for the platform asked for (`--platform linux/amd64` or `linux/arm64`, e.g.
# for Graviton Fargate tasks); musl-gcc is the native musl toolchain of that platform.
FROM rust:${RUST_VERSION}-bookworm AS builder
ARG TARGETARCH
RUN case "${TARGETARCH:-amd64}" in \
      amd64) echo x86_64-unknown-linux-musl ;; \
      arm64) echo aarch64-unknown-linux-musl ;; \
      *) echo "unsupported architecture ${TARGETARCH}" >&2; exit 1 ;; \
    esac > /rust-target \
    && apt-get update \
    && apt-get install -y --no-install-recommends musl-tools=1.2.3-1 \
    && rm -rf /var/lib/apt/lists/* \
    && rustup target add "$(cat /rust-target)"
WORKDIR /src

# Dependencies first, against placeholder sources, so this layer is reused until
# Cargo.toml/Cargo.lock, build.rs or the protos change. The placeholders stand in for every
# target the manifest declares (cargo refuses a manifest whose targets are missing).
COPY Cargo.toml Cargo.lock build.rs ./
COPY proto ./proto
RUN mkdir -p src benches tests \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && echo 'fn main() {}' > benches/evaluation.rs \
    && echo 'fn main() {}' > tests/testbed_evaluator.rs \
    && cargo build --release --locked --target "$(cat /rust-target)" --features mimalloc \
    && rm -rf src

# The real sources; touched so cargo never mistakes them for the older placeholders.
COPY assets ./assets
COPY src ./src
RUN find src assets -type f -exec touch {} + \
    && cargo build --release --locked --target "$(cat /rust-target)" --features mimalloc \
    && cp "target/$(cat /rust-target)/release/flagpole" /flagpole \
    && /flagpole version

# ---- runtime: nothing but the binary and the CA bundle ----
FROM scratch
LABEL org.opencontainers.image.title="flagpole" \
      org.opencontainers.image.description="A flagd-compatible feature-flag evaluation daemon built for AWS" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=builder /flagpole /flagpole
# Numeric, so runAsNonRoot can verify it without an /etc/passwd (distroless "nonroot").
USER 65532:65532
# evaluation (gRPC, Connect), management (/healthz, /readyz, /metrics), sync (gRPC), OFREP
EXPOSE 8013 8014 8015 8016
# mimalloc commits whole arenas eagerly by default: 23 MB idle RSS instead of 10 MB.
ENV FLAGD_LOG_FORMAT=json \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    MIMALLOC_ARENA_EAGER_COMMIT=0
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
    CMD ["/flagpole", "healthcheck"]
ENTRYPOINT ["/flagpole"]
CMD ["start"]
