# The aps-etl Dagster code location (also runs the webserver and daemon in compose).
FROM python:3.11.14-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DAGSTER_HOME=/opt/dagster/home

WORKDIR /opt/aps-etl

# Runtime dependencies first, from their lock (no test or benchmark tools), so code
# changes do not reinstall them.
COPY requirements-runtime.lock ./
RUN pip install --no-cache-dir uv==0.13.9 \
    && uv pip sync --system --no-cache requirements-runtime.lock

COPY pyproject.toml README.md ./
COPY aps_etl ./aps_etl
RUN uv pip install --system --no-cache --no-deps . \
    && useradd --create-home --uid 10001 aps \
    && mkdir -p "$DAGSTER_HOME" \
    && chown aps "$DAGSTER_HOME"
COPY --chown=aps infra/docker/dagster.yaml infra/docker/workspace.yaml /opt/dagster/home/

USER 10001
EXPOSE 3000 4000
CMD ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "4000", "-m", "aps_etl.definitions"]
