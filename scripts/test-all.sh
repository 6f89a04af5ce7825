#!/usr/bin/env bash
# Runs every flotilla test on a fresh Debian machine (as root): installs what the tests need,
# starts the test bed (a private dockerd; nothing else on the machine is touched), runs format,
# lint, unit and integration tests, stops what it started, and prints the time of each stage.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

declare -a TIMINGS=()
stage_start=0
stage_name=""
begin() { stage_name=$1; stage_start=$(date +%s.%N); printf '\n=== %s\n' "$1"; }
end() {
  local t; t=$(awk -v a="$stage_start" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
  TIMINGS+=("$(printf '%-34s %8ss' "$stage_name" "$t")")
  printf '=== %s: %ss\n' "$stage_name" "$t"
}
report() {
  printf '\n=== stage timings\n'
  for t in "${TIMINGS[@]}"; do printf '  %s\n' "$t"; done
}

need_root() {
  if [ "$(id -u)" != 0 ]; then echo "run as root: the tests start a private dockerd and create bridges" >&2; exit 2; fi
}

begin "install packages"
need_root
PKGS="docker.io openssh-client debootstrap iptables iproute2 busybox-static procps mariadb-server rabbitmq-server jq curl prometheus-alertmanager postgresql etcd-server protobuf-compiler"
missing=""
for p in $PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  echo "installing:$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  # The tests start their own instances (own ports, own data dirs) and stop them by pid: keep the
  # packages' services from starting system-wide on a systemd machine.
  own_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && own_policy=1
  fi
  rc=0
  apt-get install -y -q $missing >/dev/null || rc=$?
  [ -z "$own_policy" ] || rm -f /usr/sbin/policy-rc.d
  [ "$rc" = 0 ] || { echo "apt-get install failed ($rc)" >&2; exit "$rc"; }
else
  echo "all present: $PKGS"
fi
end

begin "start test bed (private dockerd)"
eval "$(integration/testbed.sh start)"
export DOCKER_HOST
trap 'sh integration/etcd.sh stop || true; sh integration/postgres.sh stop || true; bash integration/openstack/testcloud.sh down || true; integration/ec2-testcloud.sh stop || true; integration/testbed.sh stop || true; report' EXIT
# One node image build per machine: the debootstrap rootfs is cached here between runs.
export FLOTILLA_CACHE_DIR=${FLOTILLA_CACHE_DIR:-/var/tmp/flotilla-test-cache}
end

begin "start PostgreSQL and etcd (state backend tests)"
sh integration/postgres.sh start
export FLOTILLA_TEST_PG_URL=postgres://flotilla:flotilla-test@127.0.0.1:55432/flotilla
sh integration/etcd.sh start
export FLOTILLA_TEST_ETCD_URL=etcd://127.0.0.1:52379/flotilla-test
end

begin "start EC2 test cloud (moto + data plane)"
integration/ec2-testcloud.sh start
end

begin "start OpenStack test cloud (install cached, init once, then restore)"
bash integration/openstack/testcloud.sh up
end

begin "cargo fmt --check"
cargo fmt --all -- --check
end

begin "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
end

begin "build tests"
cargo test --workspace --locked --no-run 2>&1 | tail -n 3
end

begin "unit tests"
cargo test --workspace --locked --lib --bins
end

begin "integration tests (real dockerd, sshd, swarm)"
# --workspace, like the build above: the same feature set, so nothing is compiled twice.
cargo test --workspace --locked --test integration -- --test-threads 4
end
