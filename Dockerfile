# syntax=docker/dockerfile:1
#
# teleport-plugin image: one binary for Slack, Discord and Mattermost.
#
#   docker build -t teleport-plugin:0.1.0 .
#
# The dependency layers are cached with cargo-chef: editing the project's own
# code rebuilds only the last cargo step. No protoc is needed (the build
# compiles the .proto files with protox).

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS chef
RUN cargo install cargo-chef --version 0.1.78 --locked
WORKDIR /src

# The dependency recipe: changes only when Cargo.toml or Cargo.lock do.
FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
# `--no-default-features`: the shipped binary carries no simulator (the
# `demo` feature and the teleport-plugin-sim crate stay out of it).
RUN cargo chef cook --release --locked --no-default-features -p teleport-plugin --recipe-path recipe.json
COPY . .
RUN cargo build --release --locked --no-default-features -p teleport-plugin --bin teleport-plugin \
    && mkdir -p /out/bin \
    && cp target/release/teleport-plugin /out/bin/teleport-plugin \
    && for chat in slack discord mattermost; do ln -s teleport-plugin /out/bin/teleport-$chat; done

# glibc and libgcc, CA certificates, no shell; runs as nonroot (65532).
# The official command names (teleport-slack, teleport-discord,
# teleport-mattermost) are symlinks made in the builder: distroless cannot
# run `ln`. Run under one of them, the binary acts as that plugin.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /out/bin/ /usr/local/bin/
USER nonroot:nonroot
EXPOSE 8081
# As the official images: the binary is the entrypoint, so `docker run IMAGE
# configure` and the charts' `teleport-plugin start --config ...` work alike.
ENTRYPOINT ["/usr/local/bin/teleport-plugin"]
CMD ["start"]
