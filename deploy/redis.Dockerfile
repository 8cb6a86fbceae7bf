# Redis for CodeCrafter's event bus (pub/sub), refresh tokens and login
# limits, from Debian's package (no registry needed). Build context: deploy/.
#   docker build -f deploy/redis.Dockerfile --build-arg BASE_IMAGE=codecrafter/base:<tag> -t codecrafter-deploy/redis deploy
ARG BASE_IMAGE
FROM ${BASE_IMAGE}

# policy-rc.d keeps the package from starting the server during the build.
# The redis user is created first with a fixed uid/gid (999) so that volumes
# and Kubernetes fsGroup/runAsUser settings can rely on it.
RUN printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d \
 && groupadd --system --gid 999 redis \
 && useradd --system --uid 999 --gid redis --home-dir /var/lib/redis --no-create-home --shell /usr/sbin/nologin redis \
 && apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -q -y --no-install-recommends redis-server \
 && apt-get clean && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/*

USER redis
WORKDIR /var/lib/redis
EXPOSE 6379
HEALTHCHECK --interval=5s --timeout=3s --retries=5 \
  CMD ["sh", "-c", "[ \"$(redis-cli ping)\" = PONG ]"]

# Append-only file in /var/lib/redis (mount a volume there) so refresh
# tokens survive a restart. No password and protected mode off: reach it
# only over a private network (compose's project network, a k8s
# NetworkPolicy); for a shared network add --requirepass and put the
# password in REDIS_URL (redis://:PASSWORD@host:6379/0).
CMD ["redis-server", "--bind", "0.0.0.0", "--protected-mode", "no", "--dir", "/var/lib/redis", \
     "--appendonly", "yes", "--save", "", "--logfile", ""]
