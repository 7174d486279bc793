#!/usr/bin/env bash
# Builds buildkitd and buildctl and installs them into ${PREFIX:-/usr/local}/bin.
# They are built from this module: go.mod pins github.com/moby/buildkit (the
# version of Slipway's BuildKit client) and names both commands as tools, so
# they build with Slipway's own dependencies (`go install …@VERSION` refuses
# BuildKit's module for its exclude directives, see shared FIELD-NOTES).
# Main packages of this module given as arguments are built by the same
# `go build` into bin/: setup.sh passes ./cmd/slipway, so the ~550 packages
# slipway shares with buildkitd compile once (same flags, one build).
# A command already installed at go.mod's version is not rebuilt.
#
# buildkitd is BuildKit's own cmd/buildkitd without what Slipway does not
# use: it is built from a copy of BuildKit's module in which
#   - the cache backends s3, azblob and gha are replaced by
#     internal/buildkitd/nocache, which refuses them (neither the AWS nor the
#     Azure SDK is compiled: about 55 CPU-seconds less on a cold build);
#   - git signature verification (util/gitutil/gitsign) is replaced by
#     internal/buildkitd/nogitsign, which refuses it (no OpenPGP, SSH
#     signature or post-quantum crypto modules);
#   - the containerd worker is left out (cmd/buildkitd/main_containerd_worker*.go:
#     Slipway builds on the OCI worker, runc; no containerd client or API);
#   - so are the exporters of buildkitd's own traces and metrics to an
#     OTLP or Jaeger collector (util/tracing/detect/otlp.go, .../jaeger).
# The last three: 116 packages and about 35 CPU-seconds less on a cold build
# (287 -> 252 CPU-s for slipway and buildkitd, measured side by side). Each
# build is marked with the recipe (buildkitd --version prints it), so that a
# buildkitd built by an earlier recipe is rebuilt.
#
#   install-buildkit.sh [--no-buildctl] [--strip] [--download] [PKG...]
#
# --no-buildctl: buildkitd only; buildctl, BuildKit's CLI, is for the tests
# (internal/baseimage) and debugging, Slipway does not run it.
# --strip: link without symbol table and debug information (-s -w), for the
# first run's faster build (setup.sh --for-run).
# --download: only download the modules the build needs (setup.sh runs
# this meanwhile compiling something else), and build nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH
PREFIX=${PREFIX:-/usr/local}
cmds=(buildkitd buildctl)
ldflags=
download=false
while [ $# -gt 0 ]; do
  case "$1" in
    --no-buildctl) cmds=(buildkitd) ;;
    --strip) ldflags="-s -w " ;;
    --download) download=true ;;
    *) break ;;
  esac
  shift
done
VERSION=$(go list -m -f '{{.Version}}' github.com/moby/buildkit)
# The recipe: this script and the packages it puts into BuildKit's tree.
RECIPE=slipway-$(cat scripts/install-buildkit.sh internal/buildkitd/*/*.go | sha256sum | cut -c1-12)
pkgs=("$@")
for cmd in "${cmds[@]}"; do
  if "$PREFIX/bin/$cmd" --version 2>/dev/null | grep -q -- " $VERSION $RECIPE\$"; then
    echo "$cmd $VERSION already installed: $PREFIX/bin/$cmd"
  else
    pkgs+=("github.com/moby/buildkit/cmd/$cmd")
  fi
done
[ ${#pkgs[@]} -gt 0 ] || exit 0
work=$(mktemp -d "${TMPDIR:-/tmp}/install-buildkit.XXXXXX")
trap 'rm -rf "$work"' EXIT
workspace=()
if [[ " ${pkgs[*]} " == *" github.com/moby/buildkit/cmd/buildkitd "* ]]; then
  # `go build -overlay` may not replace files of the module cache: build
  # from a copy of BuildKit's module (11 MB) with the parts above replaced
  # or left out, through a workspace that replaces the module with the copy.
  dir=$(go mod download -json github.com/moby/buildkit | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [ -d "$dir" ] || { echo "install-buildkit.sh: BuildKit's module directory not found" >&2; exit 1; }
  cp -r "$dir" "$work/buildkit"
  chmod -R u+w "$work/buildkit"
  bk=$work/buildkit
  # replace DIR PKG: DIR's Go files become internal/buildkitd/PKG, renamed.
  replace() {
    local dir=$bk/$1 name=${1##*/}
    [ -d "$dir" ] || { echo "install-buildkit.sh: $1 not found in BuildKit $VERSION" >&2; exit 1; }
    rm -f "$dir"/*.go
    sed "s/^package $2\$/package $name/" "internal/buildkitd/$2/$2.go" >"$dir/$2.go"
  }
  # drop FILE...: remove files that register an optional part (by init).
  drop() {
    local f
    for f in "$@"; do
      [ -f "$bk/$f" ] || { echo "install-buildkit.sh: $f not found in BuildKit $VERSION" >&2; exit 1; }
      rm "$bk/$f"
    done
  }
  for backend in s3 azblob gha; do
    replace "cache/remotecache/$backend" nocache
  done
  replace util/gitutil/gitsign nogitsign
  drop cmd/buildkitd/main_containerd_worker.go cmd/buildkitd/main_containerd_worker_unix.go
  drop util/tracing/detect/otlp.go util/tracing/detect/jaeger/jaeger.go
  # main.go imports the jaeger package for its init alone: leave it empty.
  printf '// Package jaeger is left empty by scripts/install-buildkit.sh.\npackage jaeger\n' \
    >"$bk/util/tracing/detect/jaeger/jaeger.go"
  GOWORK=$work/go.work go work init "$PWD"
  GOWORK=$work/go.work go work edit -replace "github.com/moby/buildkit=$work/buildkit"
  workspace=(env "GOWORK=$work/go.work")
fi
if $download; then
  "${workspace[@]}" go list -deps "${pkgs[@]}" >/dev/null
  exit 0
fi
echo "building ${pkgs[*]} (BuildKit $VERSION); on 2 cores with empty Go caches this takes a few minutes"
SECONDS=0
"${workspace[@]}" go build -ldflags "$ldflags-X github.com/moby/buildkit/version.Version=$VERSION -X github.com/moby/buildkit/version.Revision=$RECIPE" -o "$work/" "${pkgs[@]}"
mkdir -p bin "$PREFIX/bin"
for pkg in "${pkgs[@]}"; do
  name=${pkg##*/}
  case "$pkg" in
    github.com/moby/buildkit/cmd/*)
      # Replace, not overwrite: a running buildkitd keeps its binary.
      cp "$work/$name" "$PREFIX/bin/.$name.tmp" && mv -f "$PREFIX/bin/.$name.tmp" "$PREFIX/bin/$name"
      echo "installed $("$PREFIX/bin/$name" --version)" ;;
    *)
      mv -f "$work/$name" "bin/$name"
      echo "built $(pwd)/bin/$name" ;;
  esac
done
echo "install-buildkit.sh: built in ${SECONDS}s"
