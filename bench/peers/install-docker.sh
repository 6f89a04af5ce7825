#!/bin/sh
# The floor: the shell commands every tool in the SSH fan-out benchmark ends up running on a
# host, sent as-is by a plain parallel `ssh` loop. Idempotent, so the no-op re-run is one probe.
set -eu
export DEBIAN_FRONTEND=noninteractive
if ! command -v dockerd >/dev/null 2>&1; then
  apt-get update -q
  apt-get install -y -q --no-install-recommends docker.io iptables ca-certificates
  apt-get clean
fi
docker version >/dev/null 2>&1 || { setsid sh -c 'exec dockerd >>/var/log/dockerd.log 2>&1' </dev/null >/dev/null 2>&1 & }
i=0
until docker version >/dev/null 2>&1; do
  i=$((i + 1))
  [ "$i" -lt 300 ] || { echo "dockerd did not answer" >&2; exit 1; }
  sleep 0.2
done
