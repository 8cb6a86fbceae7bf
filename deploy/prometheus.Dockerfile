# Prometheus from Debian's package (2.42; no registry needed) with
# CodeCrafter's scrape config and alert rules baked in. Build context:
# deploy/. After editing deploy/prometheus/, rebuild (docker-compose up -d
# --build prometheus).
#   docker build -f deploy/prometheus.Dockerfile --build-arg BASE_IMAGE=codecrafter/base:<tag> -t codecrafter-deploy/prometheus deploy
ARG BASE_IMAGE
FROM ${BASE_IMAGE}

# policy-rc.d keeps the package from starting the server during the build;
# no recommends: the node exporter is not wanted in a container.
# The prometheus user is created first with a fixed uid/gid (997) so that volumes
# and Kubernetes fsGroup/runAsUser settings can rely on it.
RUN printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d \
 && groupadd --system --gid 997 prometheus \
 && useradd --system --uid 997 --gid prometheus --home-dir /var/lib/prometheus --no-create-home --shell /usr/sbin/nologin prometheus \
 && apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -q -y --no-install-recommends prometheus \
 && apt-get clean && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/* \
 && chown prometheus:prometheus /var/lib/prometheus
COPY prometheus/ /etc/prometheus/
# Fails the build on a broken config or rule file.
RUN promtool check config /etc/prometheus/prometheus.yml

USER prometheus
WORKDIR /var/lib/prometheus
EXPOSE 9090
# Healthy once it answers queries (its API waits for the TSDB to be ready).
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
  CMD ["promtool", "query", "instant", "http://127.0.0.1:9090", "vector(1)"]
# --web.enable-lifecycle allows POST /-/reload after a config change.
CMD ["prometheus", "--config.file=/etc/prometheus/prometheus.yml", \
     "--storage.tsdb.path=/var/lib/prometheus/metrics2", "--storage.tsdb.retention.time=15d", \
     "--web.enable-lifecycle"]
