#!/usr/bin/env bash
# Installs (apt, when missing) and starts the services the sandbox and the
# tests need: dockerd (with crun and gVisor's runsc registered), redis-server,
# rabbitmq-server. Idempotent: a service that already answers is left alone,
# except that a running dockerd is told to reload its runtimes (SIGHUP) when
# this script registers one.
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

# The OCI runtimes registered with dockerd beside its runc: gVisor's runsc,
# so sandboxes can run under it (-sandbox-runtime runsc) and its tests run
# (CODECRAFTER_GVISOR=0 skips it), and crun, which sandboxes use by default
# where it is registered: it starts and removes a container for less than
# runc (BENCHMARKS.md; CODECRAFTER_CRUN=0 skips it). A daemon.json this
# script did not write is left alone.
daemon_json() { # daemon_json RUNSC CRUN (1 or 0 each)
  local rts=()
  [ "$1" = 1 ] && rts+=('"runsc": {"path": "/usr/bin/runsc", "runtimeArgs": ["--network=none", "--platform=ptrace"]}')
  [ "$2" = 1 ] && rts+=('"crun": {"path": "/usr/bin/crun"}')
  local IFS=,; local body="${rts[*]}"
  printf '{"runtimes": {%s}}\n' "${body//,\"/, \"}"
}

# crun_cgroups_ok prepares the cgroup layout for crun: on a hybrid one
# (v1 controllers, a v2 hierarchy at unified/), crun 1.8 refuses to start
# anything while the v2 side holds a controller, which a machine without
# systemd leaves there (hugetlb, here); mounted as v1 like the others
# (runc then uses it too), it leaves v2. Not persistent: done each time.
crun_cgroups_ok() {
  local f=/sys/fs/cgroup/unified/cgroup.controllers c
  [ -f "$f" ] || return 0 # pure v1 or pure v2
  for c in $(cat "$f"); do
    as_root mkdir -p "/sys/fs/cgroup/$c" 2>/dev/null &&
      as_root mount -t cgroup -o "$c" cgroup "/sys/fs/cgroup/$c" 2>/dev/null &&
      log "mounted the $c cgroup controller as v1 (for crun)" || true
  done
  [ -z "$(cat "$f")" ] || { log "cgroup v2 still holds $(cat "$f"): crun not registered"; return 1; }
}

configure_runtimes() {
  local runsc=0 crun=0
  if [ "${CODECRAFTER_GVISOR:-1}" = 1 ]; then
    command -v runsc >/dev/null || need_pkgs runsc
    runsc=1
  fi
  if [ "${CODECRAFTER_CRUN:-1}" = 1 ]; then
    command -v crun >/dev/null || need_pkgs crun
    crun_cgroups_ok && crun=1
  fi
  local json; json=$(daemon_json $runsc $crun)
  if [ -f /etc/docker/daemon.json ]; then
    local have; have=$(cat /etc/docker/daemon.json)
    [ "$have" = "$json" ] && return 0
    local ours="" v
    for v in "$(daemon_json 1 0)" "$(daemon_json 0 1)" "$(daemon_json 1 1)" "$(daemon_json 0 0)"; do
      [ "$have" = "$v" ] && ours=1
    done
    if [ -z "$ours" ]; then
      log "/etc/docker/daemon.json is not this script's: runtimes left as they are"
      return 0
    fi
  fi
  as_root mkdir -p /etc/docker
  printf '%s\n' "$json" | as_root tee /etc/docker/daemon.json >/dev/null
  log "registered runtimes in /etc/docker/daemon.json:$([ $runsc = 1 ] && echo ' runsc (gVisor)')$([ $crun = 1 ] && echo ' crun')"
  # A running dockerd reloads its runtimes on SIGHUP, containers untouched.
  if pgrep -x dockerd >/dev/null; then
    as_root kill -HUP "$(pgrep -x dockerd)"
    wait_for "dockerd's runtimes" 20 sh -c "docker info 2>/dev/null | grep -q 'Runtimes:.*$([ $crun = 1 ] && echo crun || echo runc)'"
  fi
}

# engine_weight gives dockerd and containerd, and the shims and OCI runtime
# processes they start (which inherit it), a cgroup of low CPU weight: the
# engine's work here is mostly starting boxes ahead of demand, which should
# yield to the runs in progress (the programs, in their containers' own
# cgroups, and the worker). Weights only matter when the cores are busy;
# BENCHMARKS.md has the measurements. CODECRAFTER_ENGINE_CPU_SHARES: the
# weight in cgroup v1's cpu.shares (of 1024; default 256; 0 leaves the
# engine where it is). Where systemd runs the engine it owns its cgroups:
# set CPUWeight= on docker.service and containerd.service instead.
engine_weight() {
  local shares=${CODECRAFTER_ENGINE_CPU_SHARES:-256} dir v p
  [ "$shares" != 0 ] || return 0
  if [ -d /run/systemd/system ]; then
    log "systemd runs the engine: for its CPU weight, systemctl set-property docker.service containerd.service CPUWeight=$((shares * 100 / 1024))"
    return 0
  fi
  if [ -f /sys/fs/cgroup/cpu/cpu.shares ]; then # v1 (or hybrid)
    dir=/sys/fs/cgroup/cpu/codecrafter-engine v=$shares
    as_root mkdir -p "$dir" && echo "$v" | as_root tee "$dir/cpu.shares" >/dev/null || return 0
  elif grep -qw cpu /sys/fs/cgroup/cgroup.controllers 2>/dev/null; then # v2
    dir=/sys/fs/cgroup/codecrafter-engine v=$((shares * 100 / 1024 > 0 ? shares * 100 / 1024 : 1))
    { echo +cpu | as_root tee /sys/fs/cgroup/cgroup.subtree_control >/dev/null &&
      as_root mkdir -p "$dir" && echo "$v" | as_root tee "$dir/cpu.weight" >/dev/null; } || return 0
  else
    return 0
  fi
  for p in $(pgrep -x dockerd) $(pgrep -x containerd) $(pgrep -f '^[^ ]*containerd-shim'); do
    echo "$p" | as_root tee "$dir/cgroup.procs" >/dev/null 2>&1 || true
  done
  log "engine at CPU weight $v in $dir"
}

start_docker() {
  if docker info >/dev/null 2>&1; then configure_runtimes; engine_weight; return 0; fi
  command -v dockerd >/dev/null || need_pkgs docker.io
  need_pkgs debootstrap
  configure_runtimes
  if ! pgrep -x dockerd >/dev/null; then
    log "starting dockerd"
    mkdir -p /var/log
    as_root sh -c 'nohup dockerd >/var/log/dockerd.log 2>&1 &'
  fi
  wait_for dockerd 60 docker info
  log "dockerd ready"
  engine_weight
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
