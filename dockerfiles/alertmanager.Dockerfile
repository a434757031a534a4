# The optional Alertmanager beside the bundled Prometheus: Debian's own package on
# the project's base image. Its config is written into the container by the stack
# (components/prometheus.py); its silences and notification log live on a volume.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
# As in prometheus.Dockerfile: the package's user, with a fixed uid/gid.
ARG SERVER_UID
RUN groupadd --system --gid "${SERVER_UID}" prometheus \
    && useradd --system --uid "${SERVER_UID}" --gid prometheus --home-dir /var/lib/prometheus \
        --no-create-home --shell /usr/sbin/nologin --comment "Prometheus daemon" prometheus \
    && apt-get update \
    && apt-get install -y --no-install-recommends prometheus-alertmanager \
    && rm -rf /var/lib/apt/lists/*
USER prometheus
EXPOSE 9093
CMD ["prometheus-alertmanager", "--config.file=/etc/prometheus/alertmanager.yml"]
