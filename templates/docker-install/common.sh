# --- common helpers (included by every distro template) ---
set -eu
flotilla_retry() {
  # Package mirrors and DNS fail transiently on fresh machines: retry 5 times with backoff.
  n=0
  until "$@"; do
    n=$((n + 1))
    if [ "$n" -ge 5 ]; then echo "flotilla: giving up after $n attempts: $*" >&2; return 1; fi
    sleep $((n * 2))
  done
}
{% if proxy.http %}export http_proxy='{{ proxy.http }}' HTTP_PROXY='{{ proxy.http }}'
{% endif %}{% if proxy.https %}export https_proxy='{{ proxy.https }}' HTTPS_PROXY='{{ proxy.https }}'
{% endif %}{% if proxy.no_proxy %}export no_proxy='{{ proxy.no_proxy }}' NO_PROXY='{{ proxy.no_proxy }}'
{% endif %}
