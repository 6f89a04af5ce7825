#!/bin/sh
# Builds a flotilla Kubernetes offline bundle (docs/blueprint.md, `cluster.kubernetes.offline`)
# for one pinned release from the Go module proxy: no registry, no package repository.
#
#   <out>/bin/{kubeadm,kubelet,kubectl,crictl}      installed on every node
#   <out>/cni/{bridge,host-local,loopback,portmap}  installed in /opt/cni/bin
#   <out>/images/*.tar                              imported into each node's containerd
#   <out>/VERSION                                   the Kubernetes release (v1.34.4)
#
# The control-plane, etcd, CoreDNS and pause images are the versions this release's kubeadm asks
# for (`kubeadm config images list`), built from source and made into images by images.sh.
# Cached by version and recipe revision: a second run prints the path and does nothing.
# Usage: build.sh [out-dir]   (default $FLOTILLA_CACHE_DIR/kubernetes/bundle-<version>-r<rev>)
set -eu

K8S_VERSION=${K8S_VERSION:-v1.34.4}
RECIPE=1
CRICTL_VERSION=${CRICTL_VERSION:-v1.34.0}
CNI_VERSION=${CNI_VERSION:-v1.9.0}
CACHE=${FLOTILLA_CACHE_DIR:-/var/tmp/flotilla-test-cache}
OUT=${1:-$CACHE/kubernetes/bundle-$K8S_VERSION-r$RECIPE}
HERE=$(cd "$(dirname "$0")" && pwd)

if [ -f "$OUT/.complete" ]; then
    echo "$OUT"
    exit 0
fi
command -v go >/dev/null || { echo "build.sh: needs a Go toolchain (go version)" >&2; exit 1; }

WORK=$CACHE/kubernetes/src
PART=$OUT.partial
rm -rf "$PART"
mkdir -p "$WORK" "$PART/bin" "$PART/cni" "$PART/images"
export CGO_ENABLED=0 GOFLAGS=-buildvcs=false
started=$(date +%s)
stage() { echo "[k8s-build] +$(( $(date +%s) - started ))s $*" >&2; }

# A module that requires `module@version`; the packages to build go into tools.go, so
# `go mod tidy` records every module they need.
wrapper() { # dir module version package...
    d=$1 m=$2 v=$3
    shift 3
    mkdir -p "$d"
    printf 'module flotilla.local/%s\n\ngo 1.24.0\n\nrequire %s %s\n' "$(basename "$d")" "$m" "$v" > "$d/go.mod"
    if [ "$m" = k8s.io/kubernetes ]; then
        # Its own `replace` lines point at its staging tree, which a dependent does not see:
        # every staging module is pinned to the matching v0.N.x here.
        curl -fsS "https://proxy.golang.org/k8s.io/kubernetes/@v/$v.mod" \
            | sed -n 's#^\t\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#\1#p' \
            | while read -r s; do echo "replace $s => $s v0.${v#v1.}"; done >> "$d/go.mod"
    fi
    { printf '//go:build tools\n\npackage tools\n\nimport (\n'
      for p in "$@"; do printf '\t_ "%s"\n' "$p"; done
      printf ')\n'; } > "$d/tools.go"
    (cd "$d" && go mod tidy)
}

build() { # dir out package [ldflags]
    (cd "$1" && go build -trimpath -ldflags "-s -w ${4:-}" -o "$2" "$3")
}

# What `kubeadm version` and the API server report (kubeadm compares the kubelet's and its own).
version_flags() {
    minor=$(echo "$K8S_VERSION" | cut -d. -f2)
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        printf ' -X %s.gitVersion=%s -X %s.gitMajor=1 -X %s.gitMinor=%s -X %s.gitTreeState=clean' \
            "$pkg" "$K8S_VERSION" "$pkg" "$pkg" "$minor" "$pkg"
    done
}

K8S_CMDS="kubeadm kubelet kubectl kube-apiserver kube-controller-manager kube-scheduler kube-proxy"
stage "kubernetes $K8S_VERSION: modules"
wrapper "$WORK/k8s-$K8S_VERSION" k8s.io/kubernetes "$K8S_VERSION" \
    $(for c in $K8S_CMDS; do echo "k8s.io/kubernetes/cmd/$c"; done)
for c in $K8S_CMDS; do
    stage "kubernetes $K8S_VERSION: $c"
    build "$WORK/k8s-$K8S_VERSION" "$PART/bin/$c" "k8s.io/kubernetes/cmd/$c" "$(version_flags)"
done

# The image versions this kubeadm asks for.
images=$("$PART/bin/kubeadm" config images list --kubernetes-version "$K8S_VERSION")
tag_of() { echo "$images" | sed -n "s#^registry.k8s.io/$1:##p"; }
ETCD_VERSION=v$(tag_of etcd | sed 's/-.*//')
COREDNS_VERSION=$(tag_of coredns/coredns)
[ "$ETCD_VERSION" != v ] && [ -n "$COREDNS_VERSION" ] && [ -n "$(tag_of pause)" ] \
    || { echo "build.sh: kubeadm listed no etcd/coredns/pause image:\n$images" >&2; exit 1; }

stage "etcd $ETCD_VERSION"
mkdir -p "$WORK/etcd-$ETCD_VERSION"
printf 'package main\n\nimport (\n\t"os"\n\n\t"go.etcd.io/etcd/server/v3/etcdmain"\n)\n\nfunc main() { etcdmain.Main(os.Args) }\n' \
    > "$WORK/etcd-$ETCD_VERSION/main.go"
wrapper "$WORK/etcd-$ETCD_VERSION" go.etcd.io/etcd/server/v3 "$ETCD_VERSION"
build "$WORK/etcd-$ETCD_VERSION" "$PART/bin/etcd" .

stage "coredns $COREDNS_VERSION"
wrapper "$WORK/coredns-$COREDNS_VERSION" github.com/coredns/coredns "$COREDNS_VERSION" github.com/coredns/coredns
build "$WORK/coredns-$COREDNS_VERSION" "$PART/bin/coredns" github.com/coredns/coredns

stage "crictl $CRICTL_VERSION"
wrapper "$WORK/crictl-$CRICTL_VERSION" sigs.k8s.io/cri-tools "$CRICTL_VERSION" sigs.k8s.io/cri-tools/cmd/crictl
build "$WORK/crictl-$CRICTL_VERSION" "$PART/bin/crictl" sigs.k8s.io/cri-tools/cmd/crictl

stage "CNI plugins $CNI_VERSION"
CNI_PLUGINS="main/bridge ipam/host-local main/loopback meta/portmap"
wrapper "$WORK/cni-$CNI_VERSION" github.com/containernetworking/plugins "$CNI_VERSION" \
    $(for p in $CNI_PLUGINS; do echo "github.com/containernetworking/plugins/plugins/$p"; done)
for p in $CNI_PLUGINS; do
    build "$WORK/cni-$CNI_VERSION" "$PART/cni/$(basename "$p")" "github.com/containernetworking/plugins/plugins/$p"
done

stage "pause"
gcc -Os -static -o "$PART/bin/pause" -DVERSION=flotilla \
    "$(go env GOMODCACHE)/k8s.io/kubernetes@$K8S_VERSION/build/pause/linux/pause.c"

stage "images"
"$HERE/images.sh" "$PART" "$images"
# Those run only inside their images.
for b in etcd coredns pause kube-apiserver kube-controller-manager kube-scheduler kube-proxy; do
    rm -f "$PART/bin/$b"
done

echo "$K8S_VERSION" > "$PART/VERSION"
echo "kubernetes $K8S_VERSION etcd $ETCD_VERSION coredns $COREDNS_VERSION cni $CNI_VERSION crictl $CRICTL_VERSION recipe $RECIPE" > "$PART/MANIFEST"
touch "$PART/.complete"
rm -rf "$OUT" && mv "$PART" "$OUT"
stage "done: $(du -sh "$OUT" | cut -f1) in $OUT"
echo "$OUT"
