#!/usr/bin/env bash
# Installs gVisor's runsc, built from its Go module with its seccomp filters
# precompiled, into ${PREFIX:-/usr/local}/bin: the OCI runtime of the
# "gvisor" sandbox. About 3-4 minutes on 2 cores.
#
# The gVisor version is the one scripts/runsc-seccomp/go.mod requires (a
# pseudo-version of gVisor's "go" branch; `cd scripts/runsc-seccomp && go get
# gvisor.dev/gvisor@latest && go mod tidy` moves it). runsc must be static
# (CGO_ENABLED=0): its sandbox re-executes itself (/proc/self/exe) inside an
# empty chroot, where a dynamically linked binary's loader does not exist
# ("error executing umounter: fork/exec /proc/self/exe: no such file or
# directory").
#
# gVisor's release builds (Bazel) embed the Sentry's and the gofer's
# seccomp-bpf programs compiled ahead of time; a runsc built from the Go
# module has none and builds them at every sandbox start, some hundreds of
# milliseconds of CPU on the path of every cold start and snapshot restore.
# scripts/runsc-seccomp generates them (the variants the gvisor sandbox
# uses) into a copy of the module's source, which runsc is built from.
set -euo pipefail
cd "$(dirname "$0")/.."
PREFIX=${PREFIX:-/usr/local}
export PATH=/usr/local/go/bin:$PATH
gen=scripts/runsc-seccomp
VERSION=$(cd $gen && go list -m -f '{{.Version}}' gvisor.dev/gvisor)
# The stamp names what was built: a new version or a new generator rebuilds.
recipe="$VERSION precompiled-seccomp-$(sha256sum $gen/main.go $gen/go.sum | sha256sum | cut -c1-12)"
stamp="$PREFIX/share/slipway/runsc.version"
if [ -x "$PREFIX/bin/runsc" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$recipe" ]; then
  echo "runsc $VERSION already installed: $PREFIX/bin/runsc"
  exit 0
fi
mkdir -p "$PREFIX/bin" "$(dirname "$stamp")"
src=$(cd $gen && go mod download -json gvisor.dev/gvisor | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
[ -d "$src" ] || { echo "install-gvisor.sh: gVisor's module source not found" >&2; exit 1; }
work=$(mktemp -d)
trap 'chmod -R u+w "$work"; rm -rf "$work"' EXIT
cp -a "$src" "$work/gvisor"
chmod -R u+w "$work/gvisor"
(cd $gen && go run . -platform systrap \
  -sentry "$work/gvisor/runsc/boot/filter/filter_precompiled.go" \
  -gofer "$work/gvisor/runsc/fsgofer/filter/filter_precompiled.go")
cp $gen/go.mod $gen/go.sum "$work/"
(cd "$work" && go mod edit -replace gvisor.dev/gvisor=./gvisor &&
  CGO_ENABLED=0 go build -trimpath -o "$PREFIX/bin/runsc.new" gvisor.dev/gvisor/runsc)
mv -f "$PREFIX/bin/runsc.new" "$PREFIX/bin/runsc"
echo "$recipe" >"$stamp"
echo "installed runsc $VERSION (seccomp filters precompiled): $PREFIX/bin/runsc"
