# MinIO, the lake's object store in the compose deployment: the binary infra/stack builds
# from MinIO's Go module (no image of it can be pulled here). Context: .docker/minio.
ARG BASE_IMAGE=aps-etl/debian:bookworm-1
FROM ${BASE_IMAGE}
RUN useradd --uid 10002 --create-home minio \
    && mkdir /data \
    && chown minio /data
ENV MINIO_UPDATE=off
EXPOSE 9000 9001
HEALTHCHECK --interval=5s --retries=30 CMD ["curl", "-fsS", "http://127.0.0.1:9000/minio/health/live"]
ENTRYPOINT ["/usr/local/bin/minio"]
CMD ["server", "/data", "--anonymous", "--console-address", ":9001"]
USER 10002
COPY minio /usr/local/bin/minio
