#!/usr/bin/env bash
# Installs what the kubernetes runtime driver's tests need (as root), only
# what is missing:
#   - kube-apiserver and kubelet built from the wrapper module tools/kube
#     (k8s.io/kubernetes with its staging modules at the same release), and
#     etcd from tools/etcd, into a cache directory that survives between runs
#     on this machine: $SLIPWAY_KUBE_CACHE (default
#     /var/cache/slipway/kubernetes/<kubernetes version>-<etcd version>),
#     reused when every binary is present. No scheduler or controller
#     manager: the tests place pods with nodeName and delete what they make.
#   - Debian's containerd (the kubelet's container runtime, on runc),
#     containernetworking-plugins (bridge, host-local, loopback) and
#     iptables (the kubelet's own chains).
# The test helper (internal/runtime/kubernetes/ktest) finds the binaries in
# the same directory; the script prints it last.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive PATH=/usr/local/go/bin:$PATH

kube_version=$(awk '$1 == "require" && $2 == "k8s.io/kubernetes" {print $3}' tools/kube/go.mod)
etcd_version=$(awk '$1 == "require" && $2 == "go.etcd.io/etcd/server/v3" {print $3}' tools/etcd/go.mod)
dest=${SLIPWAY_KUBE_CACHE:-/var/cache/slipway/kubernetes/$kube_version-$etcd_version}

need=()
command -v containerd >/dev/null 2>&1 || need+=(containerd)
command -v runc >/dev/null 2>&1 || need+=(runc)
command -v iptables >/dev/null 2>&1 || need+=(iptables)
[ -x /usr/lib/cni/bridge ] || need+=(containernetworking-plugins)
if [ ${#need[@]} -gt 0 ]; then
  echo "install-kubernetes.sh: installing ${need[*]}"
  apt-get update
  apt-get install -y --no-install-recommends "${need[@]}"
fi
# Debian starts containerd as a service when it installs it; the tests start
# their own, with a config of their own, so the packaged one stays off.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet containerd 2>/dev/null; then
  systemctl disable --now containerd || true
fi

if [ -x "$dest/kube-apiserver" ] && [ -x "$dest/kubelet" ] && [ -x "$dest/etcd" ]; then
  echo "kubernetes $kube_version and etcd $etcd_version already in $dest"
  exit 0
fi
mkdir -p "$dest"
minor=${kube_version#v1.}
minor=${minor%%.*}
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$kube_version
 -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor
 -X k8s.io/component-base/version.gitTreeState=clean"
# One program at a time: the machine is shared, and the go command already
# uses every core for one.
(
  cd tools/kube
  for prog in kube-apiserver kubelet; do
    [ -x "$dest/$prog" ] && continue
    echo "install-kubernetes.sh: building $prog $kube_version"
    go build -trimpath -ldflags "$ldflags" -o "$dest/$prog.tmp" "k8s.io/kubernetes/cmd/$prog"
    mv "$dest/$prog.tmp" "$dest/$prog"
  done
)
if [ ! -x "$dest/etcd" ]; then
  echo "install-kubernetes.sh: building etcd $etcd_version"
  (cd tools/etcd && go build -trimpath -ldflags "-s -w" -o "$dest/etcd.tmp" go.etcd.io/etcd/server/v3)
  mv "$dest/etcd.tmp" "$dest/etcd"
fi
echo "installed kubernetes $kube_version and etcd $etcd_version in $dest"
