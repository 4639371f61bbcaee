# HAProxy from Debian's package (2.6, with Lua): the compose deployment's Docker socket proxy
# (service docker-api) and the UI's authenticating TLS front (service ui). Their
# configuration is mounted by compose from infra/docker/haproxy/. Context: .docker/haproxy
# (empty).
ARG BASE_IMAGE=aps-etl/debian:bookworm-1
FROM ${BASE_IMAGE}
# Debian's haproxy user, moved to a fixed uid: infra/docker/deploy gives it the front's key.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends haproxy \
    && rm -rf /var/lib/apt/lists/* \
    && groupmod --gid 10004 haproxy \
    && usermod --uid 10004 --gid 10004 haproxy \
    && chown -R haproxy:haproxy /var/lib/haproxy
ENTRYPOINT ["/usr/sbin/haproxy", "-db"]
USER 10004
