#!/bin/sh
# Builds the Kubernetes node and control-plane binaries of one pinned release from the Go module
# proxy (no registry, no package repository), plus crictl, etcd, the CNI plugins and pause, and
# lays them out as a flotilla offline bundle (docs/blueprint.md, `cluster.kubernetes.offline`):
#
#   <out>/bin/{kubeadm,kubelet,kubectl,crictl}      installed on every node
#   <out>/cni/{bridge,host-local,loopback,portmap}  installed in /opt/cni/bin
#   <out>/images/*.tar                              imported into each node's containerd
#
# Cached by version: a second run with the same versions prints the path and does nothing.
# Usage: build.sh [out-dir]   (default $FLOTILLA_CACHE_DIR/kubernetes/<version>)
set -eu

K8S_VERSION=${K8S_VERSION:-v1.34.4}
STAGING_VERSION=v0.${K8S_VERSION#v1.}
CRICTL_VERSION=${CRICTL_VERSION:-v1.34.0}
ETCD_VERSION=${ETCD_VERSION:-v3.6.16}
CNI_VERSION=${CNI_VERSION:-v1.9.0}
CACHE=${FLOTILLA_CACHE_DIR:-/var/tmp/flotilla-test-cache}
OUT=${1:-$CACHE/kubernetes/$K8S_VERSION-etcd$ETCD_VERSION-cni$CNI_VERSION-crictl$CRICTL_VERSION}
HERE=$(cd "$(dirname "$0")" && pwd)

if [ -f "$OUT/.complete" ]; then
    echo "$OUT"
    exit 0
fi
command -v go >/dev/null || { echo "build.sh: needs a Go toolchain (go version)" >&2; exit 1; }

WORK=$CACHE/kubernetes/src-$K8S_VERSION
mkdir -p "$WORK" "$OUT.partial/bin" "$OUT.partial/cni" "$OUT.partial/images"
export CGO_ENABLED=0 GOFLAGS=-buildvcs=false
stage() { echo "[k8s-build] $(date +%H:%M:%S) $*" >&2; }
started=$(date +%s)

# One wrapper module per component family: k8s.io/kubernetes's own `replace` lines point at its
# staging tree, which a dependent does not see, so every staging module is pinned here.
wrapper() { # dir module version [replace lines]
    mkdir -p "$1"
    printf 'module flotilla.local/%s\n\ngo 1.24.0\n\nrequire %s %s\n' \
        "$(basename "$1")" "$2" "$3" > "$1/go.mod"
}

# tools.go: the commands as imports, so `go mod tidy` records every module they need.
tools() { # dir package...
    d=$1; shift
    { printf '//go:build tools\n\npackage tools\n\nimport (\n'
      for p in "$@"; do printf '\t_ "%s"\n' "$p"; done
      printf ')\n'; } > "$d/tools.go"
    (cd "$d" && go mod tidy)
}

stage "kubernetes $K8S_VERSION: modules"
wrapper "$WORK/k8s" k8s.io/kubernetes "$K8S_VERSION"
curl -fsS "https://proxy.golang.org/k8s.io/kubernetes/@v/$K8S_VERSION.mod" \
    | sed -n 's#^\t\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#\1#p' \
    | while read -r m; do echo "replace $m => $m $STAGING_VERSION"; done >> "$WORK/k8s/go.mod"
# What `kubeadm version` and the API server report (kubeadm checks kubelet's and its own).
version_flags() {
    minor=$(echo "$K8S_VERSION" | cut -d. -f2)
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        printf ' -X %s.gitVersion=%s -X %s.gitMajor=1 -X %s.gitMinor=%s -X %s.gitTreeState=clean' \
            "$pkg" "$K8S_VERSION" "$pkg" "$pkg" "$minor" "$pkg"
    done
}
K8S_CMDS="kubeadm kubelet kubectl kube-apiserver kube-controller-manager kube-scheduler kube-proxy"
tools "$WORK/k8s" $(for c in $K8S_CMDS; do echo "k8s.io/kubernetes/cmd/$c"; done)
for c in $K8S_CMDS; do
    stage "kubernetes $K8S_VERSION: $c"
    (cd "$WORK/k8s" && go build -trimpath -ldflags "-s -w $(version_flags)" \
        -o "$OUT.partial/bin/$c" "k8s.io/kubernetes/cmd/$c")
done

stage "crictl $CRICTL_VERSION"
wrapper "$WORK/crictl" sigs.k8s.io/cri-tools "$CRICTL_VERSION"
tools "$WORK/crictl" sigs.k8s.io/cri-tools/cmd/crictl
(cd "$WORK/crictl" && go build -trimpath -ldflags "-s -w" -o "$OUT.partial/bin/crictl" sigs.k8s.io/cri-tools/cmd/crictl)

stage "etcd $ETCD_VERSION"
mkdir -p "$WORK/etcd"
printf 'module flotilla.local/etcd\n\ngo 1.24.0\n\nrequire go.etcd.io/etcd/server/v3 %s\n' "$ETCD_VERSION" > "$WORK/etcd/go.mod"
printf 'package main\n\nimport (\n\t"os"\n\n\t"go.etcd.io/etcd/server/v3/etcdmain"\n)\n\nfunc main() { etcdmain.Main(os.Args) }\n' > "$WORK/etcd/main.go"
(cd "$WORK/etcd" && go mod tidy >/dev/null && go build -trimpath -ldflags "-s -w" -o "$OUT.partial/bin/etcd" .)

stage "CNI plugins $CNI_VERSION"
wrapper "$WORK/cni" github.com/containernetworking/plugins "$CNI_VERSION"
CNI_PLUGINS="main/bridge ipam/host-local main/loopback meta/portmap"
tools "$WORK/cni" $(for p in $CNI_PLUGINS; do echo "github.com/containernetworking/plugins/plugins/$p"; done)
for p in $CNI_PLUGINS; do
    (cd "$WORK/cni" && go build -trimpath -ldflags "-s -w" -o "$OUT.partial/cni/$(basename $p)" "github.com/containernetworking/plugins/plugins/$p")
done

stage "pause"
pause_c=$(go env GOMODCACHE)/k8s.io/kubernetes@$K8S_VERSION/build/pause/linux/pause.c
gcc -Os -static -o "$OUT.partial/bin/pause" -DVERSION=flotilla "$pause_c"

stage "images"
"$HERE/images.sh" "$OUT.partial" "$K8S_VERSION" "$ETCD_VERSION"

echo "$K8S_VERSION etcd $ETCD_VERSION cni $CNI_VERSION crictl $CRICTL_VERSION" > "$OUT.partial/VERSIONS"
touch "$OUT.partial/.complete"
rm -rf "$OUT" && mv "$OUT.partial" "$OUT"
stage "done in $(( $(date +%s) - started )) s: $(du -sh "$OUT" | cut -f1)"
echo "$OUT"
