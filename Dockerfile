# clbsync container images, both from this file:
#   docker build -t clbsync:0.1.0 .                         the CronJob image: distroless, no shell (the default)
#   docker build --target debug -t clbsync:0.1.0-debug .    the same binary with a busybox shell, for CI jobs
# Base images are pinned by digest, with the tag in the comment above each FROM; to move to a newer image, look
# up the tag's current digest (`docker buildx imagetools inspect <tag>`) and replace both.
# No HEALTHCHECK: Kubernetes ignores it (watch mode's Deployment has probes), and distroless has no shell to run one.
# checkov:skip=CKV_DOCKER_2: no HEALTHCHECK, Kubernetes probes instead (see above)

# Build stage: the official Rust image (rust:1.95.0-slim-bookworm).
FROM rust:1.95.0-slim-bookworm@sha256:d7482085ff5b415f84dba5647ae71606650bdef00db7aeb69f4b3d170c3e4082 AS build
WORKDIR /src
# Dependencies first, in a layer of their own that only a change to Cargo.toml or Cargo.lock rebuilds: the
# workspace's manifests, an empty stand-in for every target they declare (testbed/dockerfile-build.sh checks
# that this list is complete), one build, then clbsync's own stand-in artifacts are removed so that the real
# sources below are always compiled.
COPY Cargo.toml Cargo.lock ./
COPY clb-emulator/Cargo.toml clb-emulator/
COPY benches/fleet/Cargo.toml benches/fleet/
COPY testbed/rollout/Cargo.toml testbed/rollout/
RUN for f in src/lib.rs src/main.rs tests/it/main.rs benches/planner.rs \
             clb-emulator/src/lib.rs clb-emulator/src/main.rs \
             benches/fleet/src/main.rs benches/fleet/src/bin/pod_decode.rs \
             testbed/rollout/src/lib.rs testbed/rollout/src/main.rs; do \
      mkdir -p "$(dirname "$f")" && echo 'fn main() {}' > "$f"; \
    done \
    && cargo build --release --locked --bin clbsync \
    && cargo clean --release --locked -p clbsync
# Then the sources, and the build line CI runs as it is (testbed/dockerfile-build.sh).
COPY . .
RUN cargo build --release --locked --bin clbsync

# Debug/CI stage: the runtime below plus busybox (/busybox/sh), for CI systems whose job image needs a shell
# (GitLab's `image:`). The digest is the one public projects pin for this tag; this machine reaches no registry,
# so check it with `docker buildx imagetools inspect` when you move it.
# gcr.io/distroless/cc-debian12:debug-nonroot
FROM gcr.io/distroless/cc-debian12:debug-nonroot@sha256:923320b891f20d5f4bd43ed3a72eeee2f3323d481d6f4bd8d0b2c96d1c0758bc AS debug
COPY --from=build /src/target/release/clbsync /usr/local/bin/clbsync
USER 65532:65532
ENTRYPOINT ["clbsync"]
CMD ["--help"]

# Run stage (the default target): glibc, CA certificates and tzdata only; no shell, no package manager.
# gcr.io/distroless/cc-debian12:nonroot
FROM gcr.io/distroless/cc-debian12:nonroot@sha256:9dac0a79194e45a7da0158a9c6da57b217585af0786db3845d1f0ec1a0dd182f
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="clbsync" \
      org.opencontainers.image.description="Keeps Tencent Cloud CLB backends equal to the ready Pod IPs of Kubernetes workloads" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /src/target/release/clbsync /usr/local/bin/clbsync
USER 65532:65532
ENTRYPOINT ["clbsync"]
CMD ["reconcile"]
