#!/usr/bin/env bash
# Installs what Slipway needs on a fresh Debian 12 machine (as root).
#
#   setup.sh            everything the tests need (scripts/test.sh, CI): runc,
#                       git, iproute2, debootstrap, curl, ca-certificates,
#                       containernetworking-plugins, npm and chromium from
#                       Debian; buildkitd and buildctl, built with the slipway
#                       binary by one `go build` (scripts/install-buildkit.sh);
#                       pebble; the microvm sandbox (scripts/install-microvm.sh);
#                       gVisor's runsc (scripts/install-gvisor.sh); and every
#                       offline base-image stand-in.
#   setup.sh --for-run  what scripts/run.sh needs, fast: the same without
#                       chromium, pebble and buildctl (test tools) and the
#                       sandboxes other than runc (install them with their
#                       scripts for --sandbox gvisor or microvm); the base images that
#                       examples/hello needs (debian, golang) are begun in the
#                       background as soon as their tool is compiled (the
#                       modules download meanwhile), while buildkitd and
#                       slipway compile at a lower priority (log:
#                       <base images dir>/../base-images.log), then npm; the
#                       server (--build-base-images) makes the rest. It
#                       compiles lean: without DWARF (-dwarf=false, -s -w:
#                       ~13% less compile CPU) and without the kubernetes
#                       driver (the nokubernetes tag: ~100 fewer packages);
#                       plain `setup.sh` or `go build -o bin/slipway
#                       ./cmd/slipway` builds the full binary.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "setup.sh: run as root (sudo)" >&2
  exit 1
fi
for_run=false
case "${1:-}" in
  --for-run) for_run=true ;;
  "") ;;
  *) echo "usage: setup.sh [--for-run]" >&2; exit 2 ;;
esac
out=${SLIPWAY_BASE_IMAGES:-/var/lib/slipway/base-images}
# Install only what is missing, checked by command: a host whose Node.js
# comes from another repository than Debian's already has an npm that
# Debian's npm package would conflict with ("held broken packages").
pairs=(runc:runc git:git ip:iproute2 debootstrap:debootstrap curl:curl
       update-ca-certificates:ca-certificates)
# npm names the registry the Node 22/24 stand-ins come from; with --for-run
# it is installed after the first base images (it is large), before the
# server reaches the Node images.
$for_run || pairs+=(npm:npm chromium:chromium)
need=()
for pair in "${pairs[@]}"; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
done
# Build steps reach the network through CNI's bridge plugin.
[ -x /usr/lib/cni/bridge ] || need+=(containernetworking-plugins)
export DEBIAN_FRONTEND=noninteractive
if [ ${#need[@]} -gt 0 ]; then
  echo "setup.sh: installing ${need[*]}"
  apt-get update
  apt-get install -y "${need[@]}"
fi
export PATH=/usr/local/go/bin:$PATH
if $for_run; then
  # The first run's compile is its critical path: leave out what the
  # first deploy does not use (GOFLAGS reaches every go build below, so the
  # standard library compiles once, with one set of flags).
  export GOFLAGS="${GOFLAGS:+$GOFLAGS }-tags=nokubernetes -gcflags=all=-dwarf=false"
  # debootstrap and apt mostly wait for the mirror and the disk while Go
  # compiles: make the first images meanwhile. The server waits for this
  # build (its cache lock) and makes what is still missing. The image tool
  # is compiled first, alone: the standard library it shares with slipway
  # and buildkitd then compiles once, not twice side by side.
  # Meanwhile the modules of slipway and buildkitd download (mostly
  # network: ~25 s, which the main build would otherwise wait for).
  mkdir -p "$(dirname "$out")" bin
  bash scripts/install-buildkit.sh --no-buildctl --download ./cmd/slipway &
  fetch=$!
  go build -o bin/slipway-base-images ./internal/baseimage/cmd/slipway-base-images
  log="$(dirname "$out")/base-images.log"
  (
    bash scripts/base-images.sh -images debian,golang "$out" || true
    if ! command -v npm >/dev/null 2>&1; then
      apt-get install -y npm || true
    fi
  ) >"$log" 2>&1 </dev/null &
  echo "setup.sh: making the debian and golang base images in the background (pid $!, log $log)"
  wait "$fetch" || true # a module that failed to download fails the build below, which says which
fi
# bin/slipway, and buildkitd (buildctl too for the tests) when missing, in one
# `go build`: the packages they share compile once.
if $for_run; then
  # At a lower priority than the base images: they wait for the mirror and
  # the disk in between, and the compile fills those gaps, where the other
  # way round the images' serial steps would end the first run alone.
  nice -n 10 bash scripts/install-buildkit.sh --no-buildctl --strip ./cmd/slipway
else
  bash scripts/install-buildkit.sh ./cmd/slipway
fi
$for_run || bash scripts/install-pebble.sh   # the ACME test CA for the router's TLS tests
$for_run || bash scripts/install-microvm.sh  # QEMU, a guest kernel and slipway-init: the microvm sandbox
$for_run || bash scripts/install-gvisor.sh   # runsc, for the gvisor sandbox and its tests
$for_run || bash scripts/install-kubernetes.sh  # etcd, kube-apiserver, kubelet (cached), containerd: the kubernetes driver's tests
$for_run || bash scripts/base-images.sh "$out"
