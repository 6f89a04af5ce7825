# --- daemon configuration and start (included by every distro template) ---
mkdir -p /etc/docker /etc/flotilla
{% if daemon_json %}printf '%s\n' {{ daemon_json }} > /etc/docker/daemon.json
{% endif %}
if [ -d /run/systemd/system ]; then
{% if proxy.http or proxy.https %}  mkdir -p /etc/systemd/system/docker.service.d
  {
    echo '[Service]'
{% if systemd_proxy.http %}    printf 'Environment="HTTP_PROXY=%s"\n' {{ systemd_proxy.http }}
{% endif %}{% if systemd_proxy.https %}    printf 'Environment="HTTPS_PROXY=%s"\n' {{ systemd_proxy.https }}
{% endif %}{% if systemd_proxy.no_proxy %}    printf 'Environment="NO_PROXY=%s"\n' {{ systemd_proxy.no_proxy }}
{% endif %}  } > /etc/systemd/system/docker.service.d/flotilla-proxy.conf
  systemctl daemon-reload
{% endif %}  docker version >/dev/null 2>&1 || systemctl enable --now docker >/dev/null 2>&1 || systemctl restart docker
elif command -v rc-service >/dev/null 2>&1 && [ -d /run/openrc ]; then
  rc-update add docker default >/dev/null 2>&1 || true
  docker version >/dev/null 2>&1 || rc-service docker start
else
  # No init system (containers, minimal images): start dockerd detached from this SSH session.
  # The init scripts are not used: they raise ulimits, which fails without CAP_SYS_RESOURCE.
  if ! docker version >/dev/null 2>&1; then
    # After a reboot the pid files survive on disk; if their pid now belongs to another process,
    # dockerd refuses to start ("pid file found"). Remove the ones that are not a live daemon.
    for pf in /var/run/docker.pid /run/docker/containerd/containerd.pid; do
      [ -f "$pf" ] || continue
      case "$(cat "/proc/$(cat "$pf" 2>/dev/null)/comm" 2>/dev/null)" in
        dockerd|containerd) ;;
        *) rm -f "$pf" ;;
      esac
    done
    setsid sh -c 'exec dockerd >>/var/log/dockerd.log 2>&1' </dev/null >/dev/null 2>&1 &
  fi
fi
i=0
until docker version >/dev/null 2>&1; do
  i=$((i + 1))
  if [ "$i" -ge 300 ]; then
    echo "flotilla: dockerd did not answer within 60s; last log lines:" >&2
    tail -n 15 /var/log/dockerd.log 2>/dev/null >&2 || journalctl -u docker -n 15 --no-pager >&2 || true
    exit 1
  fi
  sleep 0.2
done
echo "docker_server=$(docker version --format '{% raw %}{{.Server.Version}}{% endraw %}')"
