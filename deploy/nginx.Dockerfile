# The load balancer in front of the API replicas: nginx from Debian's
# package (no registry needed), config in nginx/nginx.conf. Build context:
# deploy/.
#   docker build -f deploy/nginx.Dockerfile --build-arg BASE_IMAGE=codecrafter/base:<tag> -t codecrafter-deploy/nginx deploy
ARG BASE_IMAGE
FROM ${BASE_IMAGE}

# policy-rc.d keeps the package from starting nginx during the build.
# nginx-light: the core modules only (proxy, upstream, map) are needed.
RUN printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d \
 && apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -q -y --no-install-recommends nginx-light \
 && apt-get clean && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/* \
 && rm -rf /etc/nginx/sites-enabled /etc/nginx/conf.d
COPY nginx/nginx.conf /etc/nginx/nginx.conf
# Fails the build on a broken config (upstream names resolve only at run
# time, so the test uses a copy that points at loopback).
RUN sed 's/server api[0-9]*:8080/server 127.0.0.1:8080/' /etc/nginx/nginx.conf > /tmp/t.conf \
 && nginx -t -q -c /tmp/t.conf -e /dev/stderr && rm -f /tmp/t.conf /tmp/nginx.pid

# Unprivileged: it listens on 8080 and writes only /tmp (a tmpfs).
USER www-data
EXPOSE 8080
HEALTHCHECK --interval=5s --timeout=3s --retries=5 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8080 && printf 'GET /nginx-health HTTP/1.0\\r\\n\\r\\n' >&3 && grep -q ' 200 ' <&3"]
CMD ["nginx", "-e", "/dev/stderr", "-g", "daemon off;"]
