# Prometheus from Debian's package on the locally made base image: the compose test's stand-in for
# prom/prometheus, since no registry can be reached here. Same entrypoint, user and working directory
# (the storage folder) as the official image (nobody, 65534), so docker-compose.yml's command works on both;
# Debian's build stores in /var/lib/prometheus/metrics2 by default, which points at /prometheus here.
ARG BASE=debian:bookworm-slim
FROM ${BASE}
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends prometheus \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /prometheus \
    && chown 65534:65534 /prometheus \
    && rm -rf /var/lib/prometheus/metrics2 \
    && ln -s /prometheus /var/lib/prometheus/metrics2
USER 65534:65534
WORKDIR /prometheus
EXPOSE 9090
ENTRYPOINT ["/usr/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml"]
