# The optional Alertmanager beside the bundled Prometheus: Debian's own package on
# the project's base image. Its config is written into the container by the stack
# (components/prometheus.py).
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
RUN apt-get update \
    && apt-get install -y --no-install-recommends prometheus-alertmanager \
    && rm -rf /var/lib/apt/lists/*
USER prometheus
EXPOSE 9093
CMD ["prometheus-alertmanager", "--config.file=/etc/prometheus/alertmanager.yml"]
