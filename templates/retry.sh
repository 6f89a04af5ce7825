flotilla_retry() {
  # Package mirrors and DNS fail transiently on fresh machines: retry 5 times with backoff.
  n=0
  until "$@"; do
    n=$((n + 1))
    if [ "$n" -ge 5 ]; then echo "flotilla: giving up after $n attempts: $*" >&2; return 1; fi
    sleep $((n * 2))
  done
}
