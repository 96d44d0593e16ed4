# clbsync container image: a static-ish Rust binary on distroless, running as UID 1001.
#   docker build -t clbsync:0.1.0 .
# Build stage: the official Rust image, pinned; the same command CI checks (tests/it/packaging.rs).
FROM rust:1.95.0-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin clbsync

# Run stage: glibc, CA certificates and tzdata only; no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="clbsync" \
      org.opencontainers.image.description="Keeps Tencent Cloud CLB backends equal to the ready Pod IPs of Kubernetes workloads" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /src/target/release/clbsync /usr/local/bin/clbsync
USER 1001:1001
ENTRYPOINT ["clbsync"]
CMD ["reconcile"]
