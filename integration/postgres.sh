#!/bin/sh
# A private PostgreSQL for the state-backend tests: its own cluster under /tmp/flotilla-pg, on
# loopback port 55432 only, password (scram) auth, run as the `postgres` user the Debian package
# creates. TLS is on with a throwaway self-signed certificate ($DIR/ca.crt, for 127.0.0.1 and
# localhost); the role `flotilla_tls` may only connect over TLS (pg_hba `hostnossl … reject`). start | stop | restart (fast shutdown, then start: what a test of a restarted database
# needs). pg_ctl stops it by the pid in its postmaster.pid.
set -eu
DIR=${FLOTILLA_TEST_PG_DIR:-/tmp/flotilla-pg}
PORT=${FLOTILLA_TEST_PG_PORT:-55432}
PASSWORD=flotilla-test
BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -n "$BIN" ] || { echo "postgres.sh: no PostgreSQL server (apt-get install postgresql)" >&2; exit 1; }
as_pg() { runuser -u postgres -- "$@"; }
running() { [ -f "$DIR/data/postmaster.pid" ] && as_pg "$BIN/pg_ctl" -D "$DIR/data" status >/dev/null 2>&1; }
start() {
  as_pg "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 60 \
    -o "-p $PORT -c listen_addresses=127.0.0.1 -k $DIR -c fsync=off -c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key" start >/dev/null
}
case "${1:-}" in
  start)
    if running; then echo "postgres already running on 127.0.0.1:$PORT"; exit 0; fi
    rm -rf "$DIR"; mkdir -p "$DIR"; chown postgres:postgres "$DIR"; chmod 700 "$DIR"
    printf '%s\n' "$PASSWORD" > "$DIR/pw"; chown postgres "$DIR/pw"
    as_pg "$BIN/initdb" -D "$DIR/data" -U flotilla --pwfile="$DIR/pw" --auth=scram-sha-256 >/dev/null
    # A throwaway CA and a server certificate it signs (verifiers refuse a CA as the server's).
    openssl req -x509 -newkey rsa:2048 -nodes -days 3 -subj /CN=flotilla-test-ca \
      -keyout "$DIR/ca.key" -out "$DIR/ca.crt" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj /CN=localhost \
      -keyout "$DIR/data/server.key" -out "$DIR/server.csr" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > "$DIR/ext"
    openssl x509 -req -in "$DIR/server.csr" -CA "$DIR/ca.crt" -CAkey "$DIR/ca.key" -CAcreateserial \
      -days 3 -extfile "$DIR/ext" -out "$DIR/data/server.crt" 2>/dev/null
    chown postgres:postgres "$DIR/data/server.key" "$DIR/data/server.crt"; chmod 600 "$DIR/data/server.key"
    chmod 644 "$DIR/ca.crt"
    { echo "hostnossl all flotilla_tls all reject"; cat "$DIR/data/pg_hba.conf"; } > "$DIR/hba.new"
    mv "$DIR/hba.new" "$DIR/data/pg_hba.conf"; chown postgres:postgres "$DIR/data/pg_hba.conf"
    start
    PGPASSWORD=$PASSWORD "$BIN/psql" -q -h 127.0.0.1 -p "$PORT" -U flotilla -d postgres -c 'CREATE DATABASE flotilla' >/dev/null
    PGPASSWORD=$PASSWORD "$BIN/psql" -q -h 127.0.0.1 -p "$PORT" -U flotilla -d flotilla \
      -c "CREATE ROLE flotilla_tls LOGIN PASSWORD '$PASSWORD' IN ROLE flotilla" >/dev/null
    echo "postgres on 127.0.0.1:$PORT (database flotilla, user flotilla)"
    ;;
  stop)
    if running; then as_pg "$BIN/pg_ctl" -D "$DIR/data" -m fast -w stop >/dev/null; fi
    ;;
  restart)
    as_pg "$BIN/pg_ctl" -D "$DIR/data" -m fast -w stop >/dev/null
    start
    ;;
  *) echo "usage: $0 start|stop|restart" >&2; exit 2 ;;
esac
