#!/usr/bin/env bash
# Installs gVisor's runsc, built from its Go module, into
# ${PREFIX:-/usr/local}/bin: the OCI runtime of the "gvisor" sandbox. About
# 1-2 minutes to build on 2 cores.
#
# gVisor's Go module is a snapshot of its "go" branch: VERSION is a
# pseudo-version (`go list -m gvisor.dev/gvisor@latest` names the newest).
# runsc must be static (CGO_ENABLED=0): its sandbox re-executes itself
# (/proc/self/exe) inside an empty chroot, where a dynamically linked
# binary's loader does not exist ("error executing umounter: fork/exec
# /proc/self/exe: no such file or directory").
set -euo pipefail
VERSION=${GVISOR_VERSION:-v0.0.0-20260905035102-160fafc42237}
PREFIX=${PREFIX:-/usr/local}
stamp="$PREFIX/share/slipway/runsc.version"
if [ -x "$PREFIX/bin/runsc" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$VERSION" ]; then
  echo "runsc $VERSION already installed: $PREFIX/bin/runsc"
  exit 0
fi
export PATH=/usr/local/go/bin:$PATH
mkdir -p "$PREFIX/bin" "$(dirname "$stamp")"
CGO_ENABLED=0 GOBIN="$PREFIX/bin" go install -trimpath "gvisor.dev/gvisor/runsc@$VERSION"
echo "$VERSION" >"$stamp"
echo "installed runsc $VERSION: $PREFIX/bin/runsc"
