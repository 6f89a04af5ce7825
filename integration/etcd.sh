#!/bin/sh
# A private etcd for the state-backend tests: one member, data under /tmp/flotilla-etcd, client
# port 127.0.0.1:52379 and peer port 127.0.0.1:52380 only. start | stop (by the pid it wrote).
set -eu
DIR=/tmp/flotilla-etcd
CLIENT=127.0.0.1:${FLOTILLA_TEST_ETCD_PORT:-52379}
PEER=127.0.0.1:${FLOTILLA_TEST_ETCD_PEER_PORT:-52380}
running() { [ -f "$DIR/pid" ] && kill -0 "$(cat "$DIR/pid")" 2>/dev/null; }
case "${1:-}" in
  start)
    if running; then echo "etcd already running on $CLIENT"; exit 0; fi
    command -v etcd >/dev/null || { echo "etcd.sh: no etcd (apt-get install etcd-server)" >&2; exit 1; }
    rm -rf "$DIR"; mkdir -p "$DIR"
    setsid etcd --name flotilla-test --data-dir "$DIR/data" \
      --listen-client-urls "http://$CLIENT" --advertise-client-urls "http://$CLIENT" \
      --listen-peer-urls "http://$PEER" --initial-advertise-peer-urls "http://$PEER" \
      --initial-cluster "flotilla-test=http://$PEER" --initial-cluster-state new \
      --unsafe-no-fsync >"$DIR/etcd.log" 2>&1 </dev/null &
    echo $! > "$DIR/pid"
    i=0
    until curl -sf "http://$CLIENT/health" >/dev/null 2>&1; do
      i=$((i + 1)); [ $i -lt 100 ] || { echo "etcd did not start; see $DIR/etcd.log" >&2; exit 1; }
      sleep 0.2
    done
    echo "etcd on $CLIENT"
    ;;
  stop)
    if running; then
      pid=$(cat "$DIR/pid"); kill "$pid"
      i=0; while kill -0 "$pid" 2>/dev/null && [ $i -lt 50 ]; do i=$((i + 1)); sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    fi
    ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
