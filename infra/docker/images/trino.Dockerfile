# Trino 476 on the JDK infra/stack runs it with (Trino 476 needs Java 24 or newer; Debian 12
# has 17): the server tarball from Maven Central with the plugins the project uses, in
# /opt/trino, the JDK in /opt/java. Configuration (etc/, catalogs) is mounted by compose
# from infra/docker/trino, generated from infra/dev_stack/config.py as the dev stack's is.
# Context: .docker/trino. Metadata first, the one large copy last (vfs copies per step).
ARG BASE_IMAGE=aps-etl/debian:bookworm-1
FROM ${BASE_IMAGE}
RUN useradd --uid 10003 --create-home trino \
    && mkdir -p /data/trino \
    && chown trino /data/trino
ENV JAVA_HOME=/opt/java \
    PATH=/opt/java/bin:$PATH
EXPOSE 8080 8443
HEALTHCHECK --interval=10s --retries=30 CMD ["/bin/sh", "-c", "curl -fsS http://127.0.0.1:8080/v1/info | grep -q '\"starting\":false'"]
ENTRYPOINT ["/opt/trino/bin/launcher", "run", "--etc-dir=/etc/trino", "--data-dir=/data/trino"]
USER 10003
COPY opt /opt
