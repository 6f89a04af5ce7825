#!/usr/bin/env bash
# EC2 test cloud: moto_server (127.0.0.1:5055), the counting/fault proxy flotilla talks to
# (127.0.0.1:5056) and the data plane that puts a real SSH host behind every running instance
# (on the test bed's dockerd, network 10.199.0.0/24). Needs `testbed.sh start` first.
#
#   integration/ec2-testcloud.sh start | stop
set -euo pipefail
cd "$(dirname "$0")"
DIR=${FLOTILLA_EC2TB_DIR:-/tmp/flotilla-ec2tb}
export DOCKER_HOST=${DOCKER_HOST:-unix:///tmp/flotilla-testbed/docker.sock}
MOTO_PORT=5055
PROXY_PORT=5056
log() { printf '%s ec2-testcloud: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

alive() { [ -f "$DIR/$1.pid" ] && kill -0 "$(cat "$DIR/$1.pid")" 2>/dev/null; }

node_image() {
  local rev
  rev=$(sed -n 's/^pub const IMAGE_REVISION: u32 = \([0-9]*\);/\1/p' ../providers/docker/src/image.rs)
  echo "flotilla/node:bookworm-r$rev"
}

start() {
  mkdir -p "$DIR"
  if ! python3 -c 'import moto.server, boto3, flask' 2>/dev/null; then
    log "installing moto"
    # Debian's own pip refuses system-wide installs (PEP 668); the test machine's is a user Python.
    python3 -m pip install -q 'moto[server,ec2]>=5.2,<5.3' \
      || python3 -m pip install -q --break-system-packages 'moto[server,ec2]>=5.2,<5.3'
  fi
  if ! alive moto; then
    MOTO_ENABLE_AMI_VALIDATION=1 MOTO_ENABLE_KEYPAIR_VALIDATION=1 \
      setsid python3 -m moto.server -H 127.0.0.1 -p $MOTO_PORT >"$DIR/moto.log" 2>&1 </dev/null &
    echo $! >"$DIR/moto.pid"
  fi
  if ! alive proxy; then
    setsid python3 ec2_testcloud.py proxy --listen 127.0.0.1:$PROXY_PORT --upstream http://127.0.0.1:$MOTO_PORT \
      >"$DIR/proxy.log" 2>&1 </dev/null &
    echo $! >"$DIR/proxy.pid"
  fi
  for _ in $(seq 1 100); do
    python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$MOTO_PORT/moto-api/', timeout=1)" 2>/dev/null && break
    sleep 0.2
  done
  if ! alive dataplane; then
    setsid python3 ec2_testcloud.py dataplane --moto http://127.0.0.1:$MOTO_PORT --image "$(node_image)" \
      >"$DIR/dataplane.log" 2>&1 </dev/null &
    echo $! >"$DIR/dataplane.pid"
  fi
  alive moto && alive proxy && alive dataplane || { tail -5 "$DIR"/*.log >&2; log "did not start"; exit 1; }
  log "moto :$MOTO_PORT, proxy :$PROXY_PORT, data plane up (logs in $DIR)"
}

stop() {
  for p in dataplane proxy moto; do
    if alive $p; then kill "$(cat "$DIR/$p.pid")"; fi
    rm -f "$DIR/$p.pid"
  done
  docker ps -aq --filter label=io.flotilla.ec2-dataplane | xargs -r docker rm -f -v >/dev/null 2>&1 || true
  docker volume ls -q | grep '^ec2dp-' | xargs -r docker volume rm -f >/dev/null 2>&1 || true
  docker network rm flotilla-ec2-dp >/dev/null 2>&1 || true
  log "stopped"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
