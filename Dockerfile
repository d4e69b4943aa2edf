# Multi-stage build of the single `strata` binary (the workspace: the command in src/, its
# crates in crates/).
FROM rust:1-bookworm AS build
# nasm: openh264 (the H.264 encoder of the render stream) builds its assembly with it; without
# nasm it silently falls back to plain C, several times slower. cmake builds CharLS.
RUN apt-get update \
 && apt-get install -y --no-install-recommends nasm cmake pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY crates ./crates
COPY schemas ./schemas
# the viewer, embedded in the binary at build time
COPY web ./web
RUN cargo build --release --locked --bin strata

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /data strata \
 && mkdir -p /data && chown strata /data
COPY --from=build /src/target/release/strata /usr/local/bin/strata
USER strata
VOLUME /data
ENV STRATA_DATA=/data STRATA_HTTP_LISTEN=0.0.0.0:8080
EXPOSE 8080
HEALTHCHECK CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8080"]
ENTRYPOINT ["strata"]
CMD ["serve"]
