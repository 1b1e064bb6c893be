# syntax=docker/dockerfile:1
# flagpole container image: a static binary on an empty base.
#
#   docker build -t flagpole .
#   docker run --rm -p 8013:8013 -p 8014:8014 flagpole            # embedded example flags
#   docker run --rm -v "$PWD/flags:/flags:ro" -p 8013:8013 flagpole start --uri file:/flags/flags.json
#
# The runtime image holds only /flagpole and the CA bundle (for S3/SQS over TLS). It has no
# shell or curl: health checks run `/flagpole healthcheck`, which probes the management port.
#
# Build arguments:
#   RUST_IMAGE  the builder's base: a Debian bookworm image with rustup/cargo on PATH (the
#               public rust image by default; CI passes a locally built one, scripts/build-image).
#   RUST_LIBC   musl (default: a static musl binary) or gnu (a static glibc binary, for a
#               toolchain that has no musl standard library and cannot download one).

ARG RUST_IMAGE=rust:1.95-bookworm

# ---- builder: runs on the build machine's platform, cross-compiles for the target ----
# `--platform linux/arm64` on an amd64 machine (e.g. for Graviton Fargate tasks) compiles with
# the aarch64 cross linker instead of running the whole compiler under emulation.
FROM --platform=$BUILDPLATFORM ${RUST_IMAGE} AS builder
ARG TARGETARCH
ARG RUST_LIBC=musl
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /src
# Chooses the Rust target, installs its C toolchain (ring and mimalloc compile C) and writes
# .cargo/config.toml so the two cargo builds below need no further arguments. Natively the
# default linker links (Rust's musl target brings its own C runtime); cross builds link with
# the target's gcc. Debian packages
# are not pinned to an exact version: a point release removes the old one from the mirror.
# hadolint ignore=DL3008
RUN case "${TARGETARCH:-amd64}" in \
      amd64) arch=x86_64 ;; \
      arm64) arch=aarch64 ;; \
      *) echo "unsupported architecture ${TARGETARCH}" >&2; exit 1 ;; \
    esac \
    && case "${RUST_LIBC}" in musl|gnu) ;; *) echo "RUST_LIBC must be musl or gnu" >&2; exit 1 ;; esac \
    && target="${arch}-unknown-linux-${RUST_LIBC}" \
    && packages=() \
    && if [ "$arch" != "$(uname -m)" ]; then \
         packages+=("gcc-${arch//_/-}-linux-gnu" "libc6-dev-${TARGETARCH}-cross"); \
         cc="${arch}-linux-gnu-gcc"; \
       elif [ "$RUST_LIBC" = musl ]; then \
         packages+=(musl-tools); cc=musl-gcc; \
       else \
         cc=gcc; \
       fi \
    && if [ "${#packages[@]}" -gt 0 ]; then \
         apt-get update \
         && apt-get install -y --no-install-recommends "${packages[@]}" \
         && rm -rf /var/lib/apt/lists/*; \
       fi \
    && { rustup target list --installed | grep -qx "$target" || rustup target add "$target"; } \
    && mkdir -p .cargo \
    && { echo '[build]'; \
         echo "target = \"$target\""; \
         echo "[target.$target]"; \
         if [ "$arch" != "$(uname -m)" ]; then echo "linker = \"$cc\""; fi; \
         echo 'rustflags = ["-C", "target-feature=+crt-static"]'; \
         echo '[env]'; \
         echo "CC_${target//-/_} = \"$cc\""; \
       } > .cargo/config.toml \
    && echo "$target" > /rust-target \
    && echo "builder: $target, C compiler $cc" \
    && cargo --version

# Dependencies first, against placeholder sources, so this layer is reused until
# Cargo.toml/Cargo.lock, build.rs or the protos change. scripts/stub-targets writes a
# placeholder for every target the manifest declares (cargo refuses a manifest whose targets
# are missing), so a new bench or test target cannot break this step.
COPY Cargo.toml Cargo.lock build.rs ./
COPY proto ./proto
COPY scripts/stub-targets /usr/local/bin/stub-targets
RUN stub-targets Cargo.toml \
    && cargo build --release --locked --features mimalloc \
    && rm -rf src

# The real sources; touched so cargo never mistakes them for the older placeholders.
COPY assets ./assets
COPY src ./src
RUN find src assets -type f -exec touch {} + \
    && cargo build --release --locked --features mimalloc \
    && cp "target/$(cat /rust-target)/release/flagpole" /flagpole \
    && { [ "$(uname -m)" != "$(cut -d- -f1 /rust-target)" ] || /flagpole version; }

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
