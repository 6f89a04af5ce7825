#!/bin/sh
# Two private etcd servers for the state-backend tests, data under /tmp/flotilla-etcd:
# * plain: client port 127.0.0.1:52379, peer 127.0.0.1:52380;
# * TLS with client certificates only: client port 127.0.0.1:52381, peer 127.0.0.1:52382, a
#   throwaway CA (ca.crt), a client certificate it signs (client.crt/client.key) and a second CA
#   that signed nothing (other-ca.crt), for the tests that must be refused.
# start | stop (by the pids it wrote).
set -eu
DIR=/tmp/flotilla-etcd
CLIENT=127.0.0.1:${FLOTILLA_TEST_ETCD_PORT:-52379}
PEER=127.0.0.1:${FLOTILLA_TEST_ETCD_PEER_PORT:-52380}
TLS_CLIENT=127.0.0.1:${FLOTILLA_TEST_ETCD_TLS_PORT:-52381}
TLS_PEER=127.0.0.1:${FLOTILLA_TEST_ETCD_TLS_PEER_PORT:-52382}
running() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

certs() {
  d=$DIR/tls
  mkdir -p "$d"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3 -subj /CN=flotilla-test-etcd-ca \
    -keyout "$d/ca.key" -out "$d/ca.crt" 2>/dev/null
  openssl req -x509 -newkey rsa:2048 -nodes -days 3 -subj /CN=flotilla-other-ca \
    -keyout "$d/other-ca.key" -out "$d/other-ca.crt" 2>/dev/null
  for who in server client; do
    openssl req -newkey rsa:2048 -nodes -subj "/CN=flotilla-test-$who" \
      -keyout "$d/$who.key" -out "$d/$who.csr" 2>/dev/null
  done
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth,clientAuth\n' > "$d/server.ext"
  printf 'basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n' > "$d/client.ext"
  for who in server client; do
    openssl x509 -req -in "$d/$who.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial \
      -days 3 -extfile "$d/$who.ext" -out "$d/$who.crt" 2>/dev/null
  done
  chmod 600 "$d"/*.key
}

wait_for() {
  i=0
  until curl -sf "$@" >/dev/null 2>&1; do
    i=$((i + 1)); [ $i -lt 100 ] || { echo "etcd did not start; see $DIR/*.log" >&2; exit 1; }
    sleep 0.2
  done
}

case "${1:-}" in
  start)
    if running "$DIR/pid" && running "$DIR/tls.pid"; then echo "etcd already running on $CLIENT and $TLS_CLIENT"; exit 0; fi
    command -v etcd >/dev/null || { echo "etcd.sh: no etcd (apt-get install etcd-server)" >&2; exit 1; }
    "$0" stop
    rm -rf "$DIR"; mkdir -p "$DIR"
    setsid etcd --name flotilla-test --data-dir "$DIR/data" \
      --listen-client-urls "http://$CLIENT" --advertise-client-urls "http://$CLIENT" \
      --listen-peer-urls "http://$PEER" --initial-advertise-peer-urls "http://$PEER" \
      --initial-cluster "flotilla-test=http://$PEER" --initial-cluster-state new \
      --unsafe-no-fsync >"$DIR/etcd.log" 2>&1 </dev/null &
    echo $! > "$DIR/pid"
    certs
    t=$DIR/tls
    setsid etcd --name flotilla-test-tls --data-dir "$DIR/tls-data" \
      --listen-client-urls "https://$TLS_CLIENT" --advertise-client-urls "https://$TLS_CLIENT" \
      --listen-peer-urls "http://$TLS_PEER" --initial-advertise-peer-urls "http://$TLS_PEER" \
      --initial-cluster "flotilla-test-tls=http://$TLS_PEER" --initial-cluster-state new \
      --cert-file "$t/server.crt" --key-file "$t/server.key" \
      --client-cert-auth --trusted-ca-file "$t/ca.crt" \
      --unsafe-no-fsync >"$DIR/etcd-tls.log" 2>&1 </dev/null &
    echo $! > "$DIR/tls.pid"
    wait_for "http://$CLIENT/health"
    wait_for --cacert "$t/ca.crt" --cert "$t/client.crt" --key "$t/client.key" "https://$TLS_CLIENT/health"
    echo "etcd on $CLIENT, with TLS and client certificates on $TLS_CLIENT (CA and client certificate in $t)"
    ;;
  stop)
    for p in "$DIR/pid" "$DIR/tls.pid"; do
      if running "$p"; then
        pid=$(cat "$p"); kill "$pid"
        i=0; while kill -0 "$pid" 2>/dev/null && [ $i -lt 50 ]; do i=$((i + 1)); sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
      fi
    done
    ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
