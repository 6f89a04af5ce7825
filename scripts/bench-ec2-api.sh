#!/usr/bin/env bash
# EC2 API-cost figure: calls by operation for bring-up, a converged re-run's observation, and
# tear-down, for N = 1, 10, 50 (or the sizes given), against moto on loopback (no data plane needed).
# Prints a markdown table; docs/performance.md records it.
set -euo pipefail
cd "$(dirname "$0")/.."
started=""
if ! python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:5055/moto-api/', timeout=1)" 2>/dev/null; then
  python3 -c 'import moto.server' 2>/dev/null || python3 -m pip install -q 'moto[server,ec2]>=5.2,<5.3'
  setsid python3 -m moto.server -H 127.0.0.1 -p 5055 >/tmp/flotilla-bench-moto.log 2>&1 </dev/null &
  started=$!
  trap '[ -n "$started" ] && kill $started' EXIT
  for _ in $(seq 1 100); do
    python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:5055/moto-api/', timeout=1)" 2>/dev/null && break
    sleep 0.2
  done
fi
echo "# $(date -u +%Y-%m-%d) on $(nproc) CPUs, $(free -g | awk '/Mem:/{print $2}') GiB; moto $(python3 -c 'import moto; print(moto.__version__)')"
cargo run --quiet --example ec2_api_cost -- "$@"
