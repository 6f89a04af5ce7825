#!/usr/bin/env bash
# Test bed for flotilla's integration tests: a private dockerd (own socket, data-root and bridge-less
# config) plus a MASQUERADE rule for the node subnets, so node containers reach the Debian mirror
# without touching any other Docker on the machine.
#
#   integration/testbed.sh start   # idempotent; prints the DOCKER_HOST to export
#   integration/testbed.sh stop    # stops what `start` started, by PID, and removes the NAT rule
#   integration/testbed.sh env     # prints `export DOCKER_HOST=...`
set -euo pipefail

TB_DIR=${FLOTILLA_TESTBED_DIR:-/tmp/flotilla-testbed}
SOCK="$TB_DIR/docker.sock"
NAT_TAG="flotilla-testbed"
NODE_NETS="10.198.0.0/16 10.199.0.0/16"

log() { printf '%s testbed: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

dockerd_alive() {
  [ -f "$TB_DIR/dockerd.pid" ] && kill -0 "$(cat "$TB_DIR/dockerd.pid")" 2>/dev/null \
    && DOCKER_HOST="unix://$SOCK" /usr/bin/docker version >/dev/null 2>&1
}

start() {
  mkdir -p "$TB_DIR/data" "$TB_DIR/exec" "$TB_DIR/logs"
  if dockerd_alive; then
    log "private dockerd already running (pid $(cat "$TB_DIR/dockerd.pid"))"
  else
    # --iptables=false: dockerd 20.10 would otherwise set the FORWARD policy to DROP and rewrite its
    # chains, disturbing anything else on the machine. NAT for the node subnets is added below.
    setsid /usr/sbin/dockerd \
      --data-root "$TB_DIR/data" --exec-root "$TB_DIR/exec" --pidfile "$TB_DIR/dockerd.pid" \
      -H "unix://$SOCK" --bridge=none --iptables=false --ip-masq=false \
      --storage-driver=overlay2 >>"$TB_DIR/logs/dockerd.log" 2>&1 </dev/null &
    for _ in $(seq 1 150); do
      DOCKER_HOST="unix://$SOCK" /usr/bin/docker version >/dev/null 2>&1 && break
      sleep 0.2
    done
    dockerd_alive || { tail -30 "$TB_DIR/logs/dockerd.log" >&2; log "dockerd did not start"; exit 1; }
    log "private dockerd up (pid $(cat "$TB_DIR/dockerd.pid")) on unix://$SOCK"
  fi
  sysctl -qw net.ipv4.ip_forward=1
  for NODE_NET in $NODE_NETS; do
    if ! iptables -t nat -C POSTROUTING -s "$NODE_NET" ! -d "$NODE_NET" -m comment --comment "$NAT_TAG" -j MASQUERADE 2>/dev/null; then
      iptables -t nat -A POSTROUTING -s "$NODE_NET" ! -d "$NODE_NET" -m comment --comment "$NAT_TAG" -j MASQUERADE
    fi
    # Forwarding between node bridges and out of them, in case the FORWARD policy is DROP.
    if ! iptables -C FORWARD -s "$NODE_NET" -m comment --comment "$NAT_TAG" -j ACCEPT 2>/dev/null; then
      iptables -I FORWARD -s "$NODE_NET" -m comment --comment "$NAT_TAG" -j ACCEPT
      iptables -I FORWARD -d "$NODE_NET" -m comment --comment "$NAT_TAG" -j ACCEPT
    fi
  done
}

stop() {
  if [ -f "$TB_DIR/dockerd.pid" ]; then
    pid=$(cat "$TB_DIR/dockerd.pid")
    if kill -0 "$pid" 2>/dev/null; then
      # Node containers first, so nested dockerds shut down cleanly.
      DOCKER_HOST="unix://$SOCK" /usr/bin/docker ps -aq --filter label=io.flotilla.managed=true \
        | xargs -r env DOCKER_HOST="unix://$SOCK" /usr/bin/docker rm -f >/dev/null 2>&1 || true
      kill "$pid"
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
      kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
      log "private dockerd stopped"
    fi
    rm -f "$TB_DIR/dockerd.pid"
  fi
  grep " $TB_DIR/exec" /proc/mounts | awk '{print $2}' | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  for NODE_NET in $NODE_NETS; do
    while iptables -t nat -D POSTROUTING -s "$NODE_NET" ! -d "$NODE_NET" -m comment --comment "$NAT_TAG" -j MASQUERADE 2>/dev/null; do :; done
    while iptables -D FORWARD -s "$NODE_NET" -m comment --comment "$NAT_TAG" -j ACCEPT 2>/dev/null; do :; done
    while iptables -D FORWARD -d "$NODE_NET" -m comment --comment "$NAT_TAG" -j ACCEPT 2>/dev/null; do :; done
  done
}

case "${1:-}" in
  start) start; echo "export DOCKER_HOST=unix://$SOCK" ;;
  stop) stop ;;
  env) echo "export DOCKER_HOST=unix://$SOCK" ;;
  *) echo "usage: $0 start|stop|env" >&2; exit 2 ;;
esac
