# The bundled Prometheus server: Debian's own package on the project's base image.
# Its config and alert rules are written into the container by the stack
# (components/prometheus.py); its samples live on a volume of the stack's.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
# The package's user, made first with a fixed uid/gid (the package keeps an existing
# system user): the data volume is given to that number, whatever the image build did.
ARG SERVER_UID
RUN groupadd --system --gid "${SERVER_UID}" prometheus \
    && useradd --system --uid "${SERVER_UID}" --gid prometheus --home-dir /var/lib/prometheus \
        --no-create-home --shell /usr/sbin/nologin --comment "Prometheus daemon" prometheus \
    && apt-get update \
    && apt-get install -y --no-install-recommends prometheus \
    && rm -rf /var/lib/apt/lists/*
USER prometheus
EXPOSE 9090
CMD ["prometheus", "--config.file=/etc/prometheus/prometheus.yml"]
