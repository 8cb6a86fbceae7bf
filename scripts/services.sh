#!/usr/bin/env bash
# Installs (apt, when missing) and starts the services the sandbox and the
# tests need: dockerd, redis-server, rabbitmq-server. Idempotent: a service
# that already answers is left alone.
#
#   usage: scripts/services.sh [docker] [redis] [rabbitmq] [tools]   (default: all)
#   (tools: promtool and docker-compose, which the deploy/ tests run)
set -euo pipefail
want=("$@")
[ ${#want[@]} -gt 0 ] || want=(docker redis rabbitmq tools)
log() { printf '[services] %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

apt_updated=""
need_pkgs() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ -z "$apt_updated" ]; then
    log "apt-get update"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    apt_updated=1
  fi
  log "apt-get install ${missing[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# wait_for DESC SECONDS CMD...: polls CMD until it succeeds.
wait_for() {
  local desc=$1 secs=$2; shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then log "$desc did not come up in ${secs}s"; return 1; fi
    sleep 0.3
  done
}

# configure_gvisor registers gVisor's runsc with dockerd (before it starts),
# so sandboxes can run under it (-sandbox-runtime runsc) and its tests run.
# CODECRAFTER_GVISOR=0 skips it; an existing daemon.json is left alone.
configure_gvisor() {
  [ "${CODECRAFTER_GVISOR:-1}" = 1 ] || return 0
  command -v runsc >/dev/null || need_pkgs runsc
  if [ -f /etc/docker/daemon.json ]; then
    grep -q runsc /etc/docker/daemon.json || log "/etc/docker/daemon.json exists without runsc: gVisor not registered"
    return 0
  fi
  mkdir -p /etc/docker
  cat >/etc/docker/daemon.json <<'JSON'
{"runtimes": {"runsc": {"path": "/usr/bin/runsc", "runtimeArgs": ["--network=none", "--platform=ptrace"]}}}
JSON
  log "registered runsc (gVisor) in /etc/docker/daemon.json"
}

start_docker() {
  if docker info >/dev/null 2>&1; then return 0; fi
  command -v dockerd >/dev/null || need_pkgs docker.io
  need_pkgs debootstrap
  configure_gvisor
  if ! pgrep -x dockerd >/dev/null; then
    log "starting dockerd"
    mkdir -p /var/log
    as_root sh -c 'nohup dockerd >/var/log/dockerd.log 2>&1 &'
  fi
  wait_for dockerd 60 docker info
  log "dockerd ready"
}

start_redis() {
  if redis-cli -p 6379 ping 2>/dev/null | grep -q PONG; then return 0; fi
  command -v redis-server >/dev/null || need_pkgs redis-server
  log "starting redis-server"
  redis-server --daemonize yes --port 6379 --bind 127.0.0.1 --save '' --appendonly no >/dev/null
  wait_for redis 20 sh -c 'redis-cli -p 6379 ping | grep -q PONG'
  log "redis ready"
}

rabbit_up() { timeout 2 bash -c '</dev/tcp/127.0.0.1/5672'; }
start_rabbitmq() {
  if rabbit_up 2>/dev/null; then return 0; fi
  command -v rabbitmq-server >/dev/null || need_pkgs rabbitmq-server
  log "starting rabbitmq-server"
  as_root rabbitmq-server -detached >/dev/null 2>&1 || true
  wait_for "rabbitmq port" 90 rabbit_up
  wait_for "rabbitmq startup" 90 rabbitmqctl -q await_startup
  log "rabbitmq ready"
}

for s in "${want[@]}"; do
  case "$s" in
    docker) start_docker ;;
    redis) start_redis ;;
    rabbitmq) start_rabbitmq ;;
    tools) command -v promtool >/dev/null && command -v docker-compose >/dev/null || need_pkgs prometheus docker-compose ;;
    *) log "unknown service $s"; exit 2 ;;
  esac
done
