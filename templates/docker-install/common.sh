# --- common helpers (included by every distro template) ---
set -eu
{% include "retry.sh" %}
{# Every {{ value }} is shell-quoted by the renderer: never put quotes around one. #}
{% if proxy.http %}export http_proxy={{ proxy.http }} HTTP_PROXY={{ proxy.http }}
{% endif %}{% if proxy.https %}export https_proxy={{ proxy.https }} HTTPS_PROXY={{ proxy.https }}
{% endif %}{% if proxy.no_proxy %}export no_proxy={{ proxy.no_proxy }} NO_PROXY={{ proxy.no_proxy }}
{% endif %}
