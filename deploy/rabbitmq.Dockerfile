# RabbitMQ for CodeCrafter's run queue, from Debian's package (3.10; no
# registry needed), with the built-in Prometheus endpoint on :15692.
# Build context: deploy/.
#   docker build -f deploy/rabbitmq.Dockerfile --build-arg BASE_IMAGE=codecrafter/base:<tag> -t codecrafter-deploy/rabbitmq deploy
# Set RABBITMQ_DEFAULT_USER and RABBITMQ_DEFAULT_PASS at run time: the
# broker creates that user on its first start (an empty data dir). The
# built-in guest user may only connect from localhost.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}

# policy-rc.d keeps the package from starting the broker during the build.
# /var/log/rabbitmq must stay writable: the upgrade log and crash dumps go there.
# The Erlang cookie the package made at build time is removed: each broker
# then writes its own on first start (into its volume) instead of every
# container sharing one baked into the image.
# The rabbitmq user is created first with a fixed uid/gid (998) so that volumes
# and Kubernetes fsGroup/runAsUser settings can rely on it.
RUN printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d \
 && groupadd --system --gid 998 rabbitmq \
 && useradd --system --uid 998 --gid rabbitmq --home-dir /var/lib/rabbitmq --no-create-home --shell /usr/sbin/nologin rabbitmq \
 && apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -q -y --no-install-recommends rabbitmq-server \
 && apt-get clean && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/* \
 && install -d -o rabbitmq -g rabbitmq -m 750 /var/log/rabbitmq \
 && rm -f /var/lib/rabbitmq/.erlang.cookie \
 && echo '[rabbitmq_prometheus].' > /etc/rabbitmq/enabled_plugins
COPY rabbitmq/rabbitmq.conf /etc/rabbitmq/rabbitmq.conf

# A fixed node name keeps the data dir (/var/lib/rabbitmq/mnesia/<node>)
# the same whatever the container's or pod's hostname is.
ENV RABBITMQ_NODENAME=rabbit@localhost \
    HOME=/var/lib/rabbitmq
USER rabbitmq
WORKDIR /var/lib/rabbitmq
EXPOSE 5672 15692
# Passes once the AMQP listener accepts connections (the Erlang cookie the
# CLI needs is in $HOME, written by the broker on its first start).
HEALTHCHECK --interval=10s --timeout=10s --start-period=30s --retries=5 \
  CMD ["rabbitmq-diagnostics", "-q", "check_port_connectivity"]
CMD ["/usr/lib/rabbitmq/bin/rabbitmq-server"]
