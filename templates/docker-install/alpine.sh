#!/bin/sh
# Docker on Alpine Linux. method: {{ method }}
{% include "common.sh" %}
if ! command -v dockerd >/dev/null 2>&1; then
{% if method == "distro" or method == "docker-ce" %}
  # Docker Inc. publishes no Alpine packages; the community repository's docker is the one.
  grep -q '^[^#].*/community' /etc/apk/repositories || sed -i 's|^#\(.*/community\)$|\1|' /etc/apk/repositories
  flotilla_retry apk add --no-cache docker{% if version %}={{ version }}{% endif %}
{% elif method == "offline" %}
  apk add --no-network --allow-untrusted {{ offline_dir }}/*.apk
{% else %}
  echo "flotilla: Docker is not installed and docker.method is preinstalled" >&2; exit 1
{% endif %}
fi
{% include "start.sh" %}
