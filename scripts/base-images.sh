#!/usr/bin/env bash
# Builds the offline stand-ins for the official base images (debian slim,
# golang, python, node) from this host's Debian mirror into an OCI image layout, by
# default /var/lib/slipway/base-images, which `slipway server` seeds into
# its embedded registry. node:22 and node:24 (node:lts) carry the official
# Node build, npm, corepack and yarn from the npm registry the host's npm is
# configured with (or -npm-registry URL), the newest release of each line.
# Idempotent: rootfs trees, layers and npm tarballs are cached in
# /var/cache/slipway/base-images (override with -cache DIR or
# SLIPWAY_BASE_IMAGES_CACHE, as `slipway server --build-base-images` does), and images
# whose recipe (and resolved Node release) did not change are not rebuilt.
# Needs root and debootstrap.
#
#   scripts/base-images.sh [-images debian,golang,node24] [-force] [OUTDIR]
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "base-images.sh: needs root (debootstrap, chroot)" >&2
  exit 1
fi
if ! command -v debootstrap >/dev/null 2>&1; then
  echo "base-images.sh: debootstrap is missing: apt-get install -y debootstrap" >&2
  exit 1
fi
export PATH=/usr/local/go/bin:$PATH
mkdir -p bin
go build -o bin/slipway-base-images ./internal/baseimage/cmd/slipway-base-images
exec bin/slipway-base-images "$@"
