# PostgreSQL 15 from Debian's packages: the source `mes`, the target `aps` and Dagster's
# storage `dagster` of the compose deployment. Context: .docker/postgres (infra/docker/build).
# Metadata first: on the vfs storage driver each instruction copies the image so far.
ARG BASE_IMAGE=aps-etl/debian:bookworm-1
FROM ${BASE_IMAGE}
ENV PATH=/usr/lib/postgresql/15/bin:$PATH \
    PGDATA=/var/lib/postgresql/data
EXPOSE 5432
HEALTHCHECK --interval=5s --retries=30 CMD ["pg_isready", "-h", "127.0.0.1", "-d", "postgres"]
ENTRYPOINT ["/usr/local/bin/aps-postgres"]
COPY postgres-entrypoint.sh /usr/local/bin/aps-postgres
COPY postgres-init.sh /usr/local/share/aps-postgres-init.sh
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends postgresql-15 \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /var/lib/postgresql/data \
    && chown postgres:postgres /var/lib/postgresql/data \
    && { [ "$(id -u postgres)" = 100 ] || { echo "Debian's postgres uid is not 100" >&2; exit 1; }; }
# Debian's postgres user (uid checked above: it owns the data volume)
USER 100
