# sigvault's image: built from this repository in one stage, run in another as a non-root user
# with SoftHSM2 (for the single-node profile; a cluster uses AWS KMS or a network HSM's module
# mounted in). No secret is baked in: the root token, HSM PINs and the database password come
# from compose secrets or the environment at run time (deploy/compose/, README "Deploying with
# docker compose").
#
#   docker build -t sigvault .
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# The whole repository but what .dockerignore leaves out (target/, fuzz/, .git/).
COPY . .
RUN cargo build --release --locked --bin sigvault

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends softhsm2 ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/sigvault --shell /usr/sbin/nologin sigvault \
 && install -d -m 0700 -o sigvault -g sigvault /var/lib/sigvault /var/lib/sigvault/softhsm/tokens /etc/sigvault
COPY --from=build /src/target/release/sigvault /usr/local/bin/sigvault
COPY deploy/compose/entrypoint.sh /usr/local/bin/sigvault-entrypoint
# SoftHSM2's token directory inside the data volume (the single-node profile's HSM).
RUN printf 'directories.tokendir = /var/lib/sigvault/softhsm/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' \
      > /etc/sigvault/softhsm2.conf
ENV SOFTHSM2_CONF=/etc/sigvault/softhsm2.conf
USER sigvault
WORKDIR /var/lib/sigvault
EXPOSE 8200
HEALTHCHECK --interval=10s --timeout=3s --retries=3 CMD curl -fsS http://127.0.0.1:8200/v1/sys/health >/dev/null || exit 1
ENTRYPOINT ["/usr/local/bin/sigvault-entrypoint"]
CMD ["serve", "--config", "/etc/sigvault/sigvault.toml"]
