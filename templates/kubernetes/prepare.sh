#!/bin/sh
# Node preparation for kubeadm {{ minor }}: runtime, kernel settings, swap, packages. Idempotent:
# a node already prepared for this version only answers the version check.
set -eu
{% include "retry.sh" %}
want={{ minor }}
pin={{ patch }}
have=$(kubeadm version -o short 2>/dev/null || true)
case "$have" in
  v$want.*) ;;
  *) need_packages=1 ;;
esac
if [ -n "$pin" ] && [ "$have" != "v$pin" ]; then need_packages=1; fi
if [ "$(cat /etc/flotilla/kubernetes-prepared 2>/dev/null)" = "$want" ] && [ -z "${need_packages:-}" ]; then
  echo "prepared=already"
  exit 0
fi

# Kernel modules and sysctls kubeadm's preflight checks want (bridged traffic through iptables).
mkdir -p /etc/modules-load.d /etc/sysctl.d /etc/flotilla
in_container=""
if [ -f /.dockerenv ] || [ -f /run/.containerenv ] || grep -qa 'container=' /proc/1/environ 2>/dev/null; then
  # A node that is a container shares the host's kernel: modules, swap and kernel settings
  # belong to the host, and changing them from here would change them for everything on it.
  in_container=1
  echo "flotilla: container node: kernel modules, sysctls and swap are left to the host" >&2
fi
if [ -z "$in_container" ]; then
  printf 'overlay\nbr_netfilter\n' > /etc/modules-load.d/flotilla-kubernetes.conf
  for m in overlay br_netfilter; do
    modprobe "$m" 2>/dev/null || echo "flotilla: warning: cannot load kernel module $m (kubeadm preflight will say whether it matters)" >&2
  done
  cat > /etc/sysctl.d/99-flotilla-kubernetes.conf <<'SYSCTL'
net.bridge.bridge-nf-call-iptables  = 1
net.bridge.bridge-nf-call-ip6tables = 1
net.ipv4.ip_forward                 = 1
SYSCTL
  sysctl --system >/dev/null 2>&1 || echo "flotilla: warning: sysctl --system failed (read-only /proc/sys?)" >&2

  # The kubelet refuses to run with swap on (unless configured otherwise): off now and at boot.
  swapoff -a 2>/dev/null || true
  if [ -f /etc/fstab ]; then sed -i.flotilla-bak '/^[^#].*[[:space:]]swap[[:space:]]/ s/^/#/' /etc/fstab; fi
fi

# Container runtime: the containerd that came with Docker, with its CRI plugin on and the systemd
# cgroup driver (the kubelet's default since 1.22). Docker itself keeps working next to it.
if command -v containerd >/dev/null 2>&1; then
  mkdir -p /etc/containerd
  if ! grep -q 'flotilla: kubernetes' /etc/containerd/config.toml 2>/dev/null; then
    [ -f /etc/containerd/config.toml ] && cp /etc/containerd/config.toml /etc/containerd/config.toml.flotilla-bak
    { echo '# flotilla: kubernetes (CRI on, SystemdCgroup)'; containerd config default; } \
      | sed 's/SystemdCgroup = false/SystemdCgroup = true/' > /etc/containerd/config.toml.new
    mv /etc/containerd/config.toml.new /etc/containerd/config.toml
    if [ -d /run/systemd/system ]; then systemctl restart containerd; fi
  fi
else
  echo "flotilla: containerd is missing: install Docker from a package that ships it (docker.io, containerd.io)" >&2
  exit 1
fi

if [ -n "${need_packages:-}" ]; then
  . /etc/os-release
  case "$ID ${ID_LIKE:-}" in
    *debian*|*ubuntu*)
      export DEBIAN_FRONTEND=noninteractive
      flotilla_retry apt-get update -q
      flotilla_retry apt-get install -y -q --no-install-recommends apt-transport-https ca-certificates curl gpg
      install -m 0755 -d /etc/apt/keyrings
      flotilla_retry curl -fsSL "https://pkgs.k8s.io/core:/stable:/v$want/deb/Release.key" -o /tmp/flotilla-k8s.key
      gpg --batch --yes --dearmor -o /etc/apt/keyrings/kubernetes-apt-keyring.gpg /tmp/flotilla-k8s.key
      echo "deb [signed-by=/etc/apt/keyrings/kubernetes-apt-keyring.gpg] https://pkgs.k8s.io/core:/stable:/v$want/deb/ /" \
        > /etc/apt/sources.list.d/kubernetes.list
      flotilla_retry apt-get update -q
      apt-mark unhold kubelet kubeadm kubectl >/dev/null 2>&1 || true
      if [ -n "$pin" ]; then
        v=$(apt-cache madison kubeadm | awk -v p="$pin-" 'index($3, p) == 1 { print $3; exit }')
        [ -n "$v" ] || { echo "flotilla: kubeadm $pin is not in the v$want repository" >&2; exit 1; }
        flotilla_retry apt-get install -y -q --allow-change-held-packages kubelet="$v" kubeadm="$v" kubectl="$v"
      else
        flotilla_retry apt-get install -y -q --allow-change-held-packages kubelet kubeadm kubectl
      fi
      apt-mark hold kubelet kubeadm kubectl >/dev/null
      ;;
    *rhel*|*fedora*|*centos*)
      cat > /etc/yum.repos.d/kubernetes.repo <<REPO
[kubernetes]
name=Kubernetes
baseurl=https://pkgs.k8s.io/core:/stable:/v$want/rpm/
enabled=1
gpgcheck=1
gpgkey=https://pkgs.k8s.io/core:/stable:/v$want/rpm/repodata/repomd.xml.key
exclude=kubelet kubeadm kubectl cri-tools kubernetes-cni
REPO
      # kubeadm's documented prerequisite on RHEL-family hosts.
      setenforce 0 2>/dev/null || true
      [ -f /etc/selinux/config ] && sed -i 's/^SELINUX=enforcing$/SELINUX=permissive/' /etc/selinux/config
      if [ -n "$pin" ]; then s="-$pin"; else s=""; fi
      flotilla_retry dnf install -y --disableexcludes=kubernetes "kubelet$s" "kubeadm$s" "kubectl$s"
      ;;
    *)
      echo "flotilla: no Kubernetes packages for $ID; supported: Debian/Ubuntu and RHEL-family" >&2
      exit 1
      ;;
  esac
fi
if [ -d /run/systemd/system ]; then systemctl enable --now kubelet >/dev/null 2>&1 || true; fi
echo "$want" > /etc/flotilla/kubernetes-prepared
echo "prepared=now $(kubeadm version -o short)"
