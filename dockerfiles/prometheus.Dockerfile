# The bundled Prometheus server: Debian's own package on the project's base image.
# Its config and alert rules are written into the container by the stack
# (components/prometheus.py); its data lives in the container and goes with it.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
RUN apt-get update \
    && apt-get install -y --no-install-recommends prometheus \
    && rm -rf /var/lib/apt/lists/*
USER prometheus
EXPOSE 9090
CMD ["prometheus", "--config.file=/etc/prometheus/prometheus.yml"]
