# pyinfra peer of the SSH fan-out benchmark: the same steps as install-docker.sh.
from pyinfra.operations import apt, server

apt.packages(
    name="docker.io from Debian, without Recommends",
    packages=["docker.io", "iptables", "ca-certificates"],
    update=True,
    cache_time=3600,
    no_recommends=True,
)
server.shell(
    name="start dockerd and wait for it",
    commands=[
        "docker version >/dev/null 2>&1 || { setsid sh -c 'exec dockerd >>/var/log/dockerd.log 2>&1' </dev/null >/dev/null 2>&1 & }",
        "i=0; until docker version >/dev/null 2>&1; do i=$((i+1)); [ $i -lt 300 ] || exit 1; sleep 0.2; done",
    ],
)
