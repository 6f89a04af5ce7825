#!/bin/sh
# images.sh <bundle-dir> <image refs>: the images kubeadm runs (control plane, etcd, CoreDNS,
# pause, kube-proxy) made from the bundle's binaries with no registry: FROM scratch plus the
# binary; kube-proxy also gets this machine's iptables (nft) with the libraries and extensions it
# loads. Each is saved as a docker archive in <bundle-dir>/images/<name>.tar, which
# `ctr images import` reads. Needs a Docker engine (DOCKER_HOST) to build with.
set -eu
B=$1
REFS=$2
export DOCKER_BUILDKIT=0
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT

# A file and every shared library it (or an extension it loads) links, under $ctx/root.
with_libs() {
    for f in "$@"; do
        mkdir -p "$ctx/root$(dirname "$f")"
        cp -L "$f" "$ctx/root$f"
        ldd "$f" 2>/dev/null | grep -o '/[^ ]*' | while read -r lib; do
            mkdir -p "$ctx/root$(dirname "$lib")"
            cp -L "$lib" "$ctx/root$lib"
        done
    done
}

iptables_into_root() {
    nft=$(command -v xtables-nft-multi) \
        || { echo "images.sh: kube-proxy's image needs iptables (nft) on this machine" >&2; exit 1; }
    ext=$(dirname "$(readlink -f "$nft")")/../lib/$(gcc -dumpmachine)/xtables
    [ -d "$ext" ] || ext=/usr/lib/$(gcc -dumpmachine)/xtables
    with_libs "$nft" "$ext"/*.so
    for t in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do
        ln -sf "$nft" "$ctx/root/usr/sbin/$t"
    done
}

for ref in $REFS; do
    name=${ref##*/}
    name=${name%%:*}
    rm -rf "$ctx/root" "$ctx/Dockerfile"
    mkdir -p "$ctx/root/usr/local/bin" "$ctx/root/tmp"
    entry=""
    case $name in
        kube-apiserver|kube-controller-manager|kube-scheduler|etcd)
            cp "$B/bin/$name" "$ctx/root/usr/local/bin/$name" ;;
        kube-proxy)
            cp "$B/bin/$name" "$ctx/root/usr/local/bin/$name"
            iptables_into_root ;;
        coredns|pause)
            cp "$B/bin/$name" "$ctx/root/$name"
            entry="ENTRYPOINT [\"/$name\"]" ;;
        *) echo "images.sh: no recipe for $ref" >&2; exit 1 ;;
    esac
    chmod 1777 "$ctx/root/tmp"
    printf 'FROM scratch\nCOPY root/ /\nENV PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n%s\n' "$entry" > "$ctx/Dockerfile"
    docker build -q -t "$ref" "$ctx" >/dev/null
    docker save -o "$B/images/$name.tar" "$ref"
    docker rmi "$ref" >/dev/null
    echo "images.sh: $ref ($(du -h "$B/images/$name.tar" | cut -f1))" >&2
done
