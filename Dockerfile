# The official `postgres` image with pg_migsafe, for CI jobs and trials:
#
#   docker build --build-arg PG_MAJOR=17 -t pg_migsafe:17 .
#   docker run -e POSTGRES_PASSWORD=… -p 5432:5432 pg_migsafe:17                       # enforcing
#   docker run -e POSTGRES_PASSWORD=… pg_migsafe:17 -c migsafe.mode=warn                # for pg_migsafe-check --dsn
#
# The build stage packages pg_migsafe with the same script as the release workflow
# (tests/tools/package.sh) against the image's own PostgreSQL; the image installs the
# .deb. pg_migsafe is preloaded (it refuses to load any other way) and created in the
# database the entrypoint initialises (POSTGRES_DB). See docs/ci.md.
ARG PG_MAJOR=17

FROM postgres:${PG_MAJOR}-bookworm AS build
ARG PG_MAJOR
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential ca-certificates curl libclang-dev \
      pkg-config libssl-dev "postgresql-server-dev-${PG_MAJOR}" \
 && rm -rf /var/lib/apt/lists/*
RUN curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --default-toolchain 1.95
ENV PATH=/root/.cargo/bin:$PATH
RUN cargo install cargo-pgrx --version =0.18.1 --locked \
 && cargo pgrx init "--pg${PG_MAJOR}" "/usr/lib/postgresql/${PG_MAJOR}/bin/pg_config"
WORKDIR /src
COPY . .
RUN PG_MAJOR="${PG_MAJOR}" DIST=/dist bash tests/tools/package.sh

FROM postgres:${PG_MAJOR}-bookworm
ARG PG_MAJOR
COPY --from=build /dist/*.deb /tmp/
# Preloaded through the configuration every new cluster starts from (initdb copies the
# sample), so that `docker run … -c migsafe.mode=warn` keeps it.
RUN dpkg -i /tmp/postgresql-"${PG_MAJOR}"-pg-migsafe_*.deb && rm /tmp/*.deb \
 && echo "shared_preload_libraries = 'pg_migsafe'" >> /usr/share/postgresql/postgresql.conf.sample \
 && echo "CREATE EXTENSION IF NOT EXISTS pg_migsafe;" > /docker-entrypoint-initdb.d/00-pg_migsafe.sql
