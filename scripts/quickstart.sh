#!/usr/bin/env bash
# README command (a): a real 3-node Docker Swarm on the local Docker engine, from nothing.
# Installs Docker (engine), the OpenSSH client, debootstrap and protoc (build) when missing, starts dockerd when
# it is not running, builds flotilla, runs `flotilla up blueprints/local-swarm.yaml`, and prints
# how to reach the swarm. Extra arguments go to `flotilla up` (e.g. --set workers=4).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  echo "run as root (it installs packages and may start dockerd)" >&2
  exit 2
fi
missing=""
command -v dockerd >/dev/null 2>&1 || missing="$missing docker.io"
command -v ssh >/dev/null 2>&1 || missing="$missing openssh-client"
command -v debootstrap >/dev/null 2>&1 || missing="$missing debootstrap"
command -v iptables >/dev/null 2>&1 || missing="$missing iptables"
# The etcd state backend's client (etcd-client) compiles its gRPC definitions with protoc.
command -v protoc >/dev/null 2>&1 || missing="$missing protobuf-compiler"
if [ -n "$missing" ]; then
  echo "installing:$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q $missing >/dev/null
fi

if [ -n "${DOCKER_HOST:-}" ]; then
  echo "using the Docker engine at DOCKER_HOST=$DOCKER_HOST"
elif ! docker version >/dev/null 2>&1; then
  if [ -d /run/systemd/system ]; then
    systemctl start docker
  else
    echo "starting dockerd (log: /var/log/flotilla-dockerd.log)"
    setsid dockerd >>/var/log/flotilla-dockerd.log 2>&1 </dev/null &
  fi
  for _ in $(seq 1 100); do docker version >/dev/null 2>&1 && break; sleep 0.2; done
  docker version >/dev/null 2>&1 || { echo "dockerd did not start; see /var/log/flotilla-dockerd.log" >&2; exit 1; }
fi

# A debug build: flotilla spends its time waiting on SSH and the Docker engine, and a cold debug
# build of the AWS SDK is minutes shorter than a release one on a small machine.
echo "building flotilla"
cargo build --locked --quiet
FLOTILLA=$PWD/target/debug/flotilla
"$FLOTILLA" up blueprints/local-swarm.yaml --yes "$@"

cat <<MSG

The swarm is up. Reach it:
  $FLOTILLA status local-swarm
  $FLOTILLA ssh local-swarm managers-1 -- docker node ls
  $FLOTILLA ssh local-swarm managers-1          # a shell on the manager (docker CLI there)
The flotilla manager (API, Alertmanager webhook, metrics) runs on the manager node:
  $FLOTILLA manager status local-swarm          # its URL; the API token is in the file it names
Tear it down:
  $FLOTILLA down local-swarm --yes
MSG
