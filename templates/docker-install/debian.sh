#!/bin/sh
# Docker on Debian and Ubuntu. method: {{ method }}
{% include "common.sh" %}
export DEBIAN_FRONTEND=noninteractive
{% if apt_proxy %}printf 'Acquire::http::Proxy "%s";\n' {{ apt_proxy }} > /etc/apt/apt.conf.d/90flotilla-proxy
{% elif proxy.http %}printf 'Acquire::http::Proxy "%s";\n' {{ proxy.http }} > /etc/apt/apt.conf.d/90flotilla-proxy
{% endif %}
if ! command -v dockerd >/dev/null 2>&1; then
{% if method == "distro" %}
  flotilla_retry apt-get update -q
  # No Recommends: they drag in systemd, perl and git (3x the time and disk) and add nothing.
  flotilla_retry apt-get install -y -q --no-install-recommends docker.io iptables ca-certificates
{% elif method == "docker-ce" %}
  . /etc/os-release
  flotilla_retry apt-get update -q
  flotilla_retry apt-get install -y -q --no-install-recommends ca-certificates curl gnupg
  install -m 0755 -d /etc/apt/keyrings
  flotilla_retry curl -fsSL "https://download.docker.com/linux/$ID/gpg" -o /etc/apt/keyrings/docker.asc
  chmod a+r /etc/apt/keyrings/docker.asc
  echo "deb [arch=$(dpkg --print-architecture) signed-by=/etc/apt/keyrings/docker.asc] https://download.docker.com/linux/$ID ${VERSION_CODENAME} stable" \
    > /etc/apt/sources.list.d/docker.list
  flotilla_retry apt-get update -q
  flotilla_retry apt-get install -y -q docker-ce{% if version %}={{ version }}{% endif %} docker-ce-cli{% if version %}={{ version }}{% endif %} containerd.io
{% elif method == "offline" %}
  # Packages uploaded by flotilla to {{ offline_dir }} (no network needed).
  dpkg -i {{ offline_dir }}/*.deb || { echo "flotilla: dpkg failed; the package folder must hold docker and all its dependencies" >&2; exit 1; }
{% else %}
  echo "flotilla: Docker is not installed and docker.method is preinstalled" >&2; exit 1
{% endif %}
  apt-get clean
fi
{% include "start.sh" %}
