#!/usr/bin/env bash
# The floor of the SSH fan-out benchmark: one `ssh` per host, all at once, each running
# install-docker.sh. usage: ssh-loop.sh KEY HOST...
set -u
key=$1; shift
script="$(dirname "$0")/install-docker.sh"
pids=()
for h in "$@"; do
  ssh -q -i "$key" -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
    -o ConnectTimeout=10 "root@$h" sh -s <"$script" >/dev/null &
  pids+=($!)
done
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=1; done
exit $rc
