#!/bin/sh
# Docker on RHEL-family systems (RHEL, CentOS Stream, Rocky, Alma, Fedora). method: {{ method }}
{% include "common.sh" %}
PM=dnf; command -v dnf >/dev/null 2>&1 || PM=yum
{% if proxy.http %}grep -q '^proxy=' /etc/$PM/$PM.conf 2>/dev/null || printf 'proxy=%s\n' {{ proxy.http }} >> /etc/$PM/$PM.conf
{% endif %}
if ! command -v dockerd >/dev/null 2>&1; then
{% if method == "distro" %}
  # Fedora ships moby-engine; RHEL-family has no distro Docker (podman instead), so fall back to
  # Docker's repository there.
  if flotilla_retry $PM -y install moby-engine; then :; else
    flotilla_retry $PM -y install dnf-plugins-core || true
    $PM config-manager --add-repo https://download.docker.com/linux/centos/docker-ce.repo
    flotilla_retry $PM -y install docker-ce docker-ce-cli containerd.io
  fi
{% elif method == "docker-ce" %}
  flotilla_retry $PM -y install dnf-plugins-core yum-utils || true
  . /etc/os-release
  case "$ID" in fedora) repo=fedora ;; rhel) repo=rhel ;; *) repo=centos ;; esac
  $PM config-manager --add-repo "https://download.docker.com/linux/$repo/docker-ce.repo" \
    || yum-config-manager --add-repo "https://download.docker.com/linux/$repo/docker-ce.repo"
  flotilla_retry $PM -y install docker-ce{% if version %}-{{ version }}{% endif %} docker-ce-cli{% if version %}-{{ version }}{% endif %} containerd.io
{% elif method == "offline" %}
  rpm -Uvh --replacepkgs {{ offline_dir }}/*.rpm
{% else %}
  echo "flotilla: Docker is not installed and docker.method is preinstalled" >&2; exit 1
{% endif %}
  $PM clean all >/dev/null 2>&1 || true
fi
{% include "start.sh" %}
