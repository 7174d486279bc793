#!/usr/bin/env bash
# Installs what Slipway needs on a fresh Debian 12 machine (as root): runc,
# git, iproute2, debootstrap, containernetworking-plugins and npm from Debian, buildkitd built from its Go
# module, the slipway binary, and the offline base-image stand-ins (npm
# names the registry the Node 22/24 stand-ins are fetched from).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "setup.sh: run as root (sudo)" >&2
  exit 1
fi
# Install only what is missing, checked by command: a host whose Node.js
# comes from another repository than Debian's already has an npm that
# Debian's npm package would conflict with ("held broken packages").
need=()
for pair in runc:runc git:git ip:iproute2 debootstrap:debootstrap curl:curl \
            chromium:chromium update-ca-certificates:ca-certificates npm:npm; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
done
# Build steps reach the network through CNI's bridge plugin.
[ -x /usr/lib/cni/bridge ] || need+=(containernetworking-plugins)
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  echo "setup.sh: installing ${need[*]}"
  apt-get update
  apt-get install -y "${need[@]}"
fi
export PATH=/usr/local/go/bin:$PATH
bash scripts/install-buildkit.sh
bash scripts/install-pebble.sh   # the ACME test CA for the router's TLS tests
mkdir -p bin
go build -o bin/slipway ./cmd/slipway
echo "built $(pwd)/bin/slipway"
bash scripts/base-images.sh "${SLIPWAY_BASE_IMAGES:-/var/lib/slipway/base-images}"
