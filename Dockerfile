# syntax=docker/dockerfile:1
# pod-identity-operator image:
#   docker build --build-arg VERSION=$(cargo pkgid | cut -d@ -f2) -t pod-identity-operator:$(cargo pkgid | cut -d@ -f2) .

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS builder
WORKDIR /src
# benches/ only because Cargo.toml names its targets; crates/ holds the library (its
# presets/ compiled in) and the AWS layer.
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY crates ./crates
COPY benches ./benches
# Without the default `sandbox` feature: no kubesim, AWS simulator or sandbox command.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --no-default-features --bin pod-identity-operator \
    && cp target/release/pod-identity-operator /pod-identity-operator

# glibc, CA certificates and a nonroot user (65532), nothing else.
FROM gcr.io/distroless/cc-debian12:nonroot
ARG VERSION=dev
LABEL org.opencontainers.image.title="pod-identity-operator" \
      org.opencontainers.image.description="Kubernetes operator that makes EKS Pod Identity declarative" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /pod-identity-operator /usr/local/bin/pod-identity-operator
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/pod-identity-operator"]
CMD ["run"]
