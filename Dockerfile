# The aps-etl image: the Dagster code location, webserver and daemon, and every run's own
# container (DockerRunLauncher). Built by infra/docker/build (make images), which makes the
# base image and the wheelhouses in .docker/ first.
#
# Instructions are ordered for the build on the vfs storage driver, where each one copies
# the whole image so far: metadata first while the image is small, the virtualenv last.
ARG BASE_IMAGE=aps-etl/debian:bookworm-1

# Debian's Python 3.11, shared by the two stages below, with unixODBC and MariaDB's ODBC
# driver: a MariaDB or MySQL MES is read through them (docs/sources.md).
FROM ${BASE_IMAGE} AS python
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 unixodbc odbc-mariadb \
    && rm -rf /var/lib/apt/lists/*

# The virtualenv, installed offline from the wheelhouse: the runtime lock (no test or
# benchmark tools), then the project's own wheel.
FROM python AS venv
COPY requirements-runtime.lock /tmp/
COPY .docker/wheelhouse /tmp/wheelhouse
COPY .docker/app /tmp/app
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --no-index --find-links /tmp/wheelhouse \
        --require-hashes -r /tmp/requirements-runtime.lock \
    && /opt/venv/bin/pip install --no-cache-dir --no-index --no-deps /tmp/app/*.whl

# Only the virtualenv reaches the image: no wheelhouse, compiler or pip cache.
FROM python
RUN useradd --create-home --uid 10001 aps \
    && mkdir -p /opt/dagster/home \
    && chown aps /opt/dagster/home
COPY --chown=aps infra/docker/dagster.yaml infra/docker/workspace.yaml /opt/dagster/home/
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DAGSTER_HOME=/opt/dagster/home \
    APS_ENV=prod
WORKDIR /opt/dagster/home
EXPOSE 3000 4000
# Refuses to start with a missing secret or as `local` (aps_etl/env/container_start.py), then
# runs the command: the default, a command from compose, or a run worker's.
ENTRYPOINT ["/opt/venv/bin/python", "-m", "aps_etl.env.container_start"]
CMD ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "4000", "-m", "aps_etl.definitions"]
USER 10001
COPY --from=venv /opt/venv /opt/venv
