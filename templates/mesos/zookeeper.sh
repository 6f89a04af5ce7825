#!/bin/sh
# ZooKeeper from the distribution's package (Debian/Ubuntu `zookeeperd`), one ensemble member per
# Mesos master: myid {{ myid }}, {{ servers | length }} servers. Restarted only when its
# configuration changed; prints `zookeeper=unchanged|started`.
set -eu
{% include "retry.sh" %}
if [ ! -x /usr/share/zookeeper/bin/zkServer.sh ] || ! command -v curl >/dev/null 2>&1; then
  . /etc/os-release
  case "$ID ${ID_LIKE:-}" in
    *debian*|*ubuntu*)
      export DEBIAN_FRONTEND=noninteractive
      flotilla_retry apt-get update -q
      flotilla_retry apt-get install -y -q --no-install-recommends zookeeperd curl ca-certificates
      ;;
    *)
      echo "flotilla: the Mesos driver installs ZooKeeper from Debian/Ubuntu packages; $ID is not supported" >&2
      exit 1
      ;;
  esac
fi
conf=/etc/zookeeper/conf
mkdir -p "$conf" /var/lib/zookeeper
cat > "$conf/zoo.cfg.flotilla" <<'ZOO'
# written by flotilla
tickTime=2000
initLimit=10
syncLimit=5
dataDir=/var/lib/zookeeper
clientPort=2181
4lw.commands.whitelist=ruok,srvr,stat,mntr
ZOO
{% for s in servers %}printf 'server.%s=%s:2888:3888\n' {{ s.id }} {{ s.ip }} >> "$conf/zoo.cfg.flotilla"
{% endfor %}printf '%s\n' {{ myid }} > /var/lib/zookeeper/myid.flotilla
zk_running() {
  if [ -d /run/systemd/system ]; then
    systemctl is-active --quiet zookeeper
  else
    pid=$(cat /var/lib/zookeeper/zookeeper_server.pid 2>/dev/null) && [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
  fi
}
if cmp -s "$conf/zoo.cfg.flotilla" "$conf/zoo.cfg" && cmp -s /var/lib/zookeeper/myid.flotilla /var/lib/zookeeper/myid && zk_running; then
  rm -f "$conf/zoo.cfg.flotilla" /var/lib/zookeeper/myid.flotilla
  echo "zookeeper=unchanged"
  exit 0
fi
mv "$conf/zoo.cfg.flotilla" "$conf/zoo.cfg"
mv /var/lib/zookeeper/myid.flotilla /var/lib/zookeeper/myid
[ -e "$conf/myid" ] || ln -s /var/lib/zookeeper/myid "$conf/myid"
chown -R zookeeper: /var/lib/zookeeper 2>/dev/null || true
if [ -d /run/systemd/system ]; then
  systemctl enable zookeeper >/dev/null 2>&1 || true
  systemctl restart zookeeper
else
  # No init system (containers): the packaged start script, detached from this SSH session.
  ZOOCFGDIR=$conf /usr/share/zookeeper/bin/zkServer.sh stop >/dev/null 2>&1 || true
  ZOOCFGDIR=$conf setsid /usr/share/zookeeper/bin/zkServer.sh start </dev/null >/var/log/flotilla-zookeeper.log 2>&1
fi
echo "zookeeper=started"
