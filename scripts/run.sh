#!/usr/bin/env bash
# Slipway's main job on a fresh Debian 12 machine: set up, start the server in
# the background, deploy examples/hello and print its URL (and what it answers).
# Only the base images examples/hello needs are made before its build; the
# server makes the others in the background (--build-base-images), and a
# build that needs one of those meanwhile waits for it.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS=0
data=${SLIPWAY_DATA:-/var/lib/slipway}
export SLIPWAY_DATA=$data
# The server reads (and makes) the base images where setup.sh writes them,
# whatever the data directory.
export SLIPWAY_BASE_IMAGES=${SLIPWAY_BASE_IMAGES:-/var/lib/slipway/base-images}
export SLIPWAY_BUILD_BASE_IMAGES=${SLIPWAY_BUILD_BASE_IMAGES:-true}
export SLIPWAY_URL=${SLIPWAY_URL:-http://127.0.0.1:7300}
bash scripts/setup.sh --for-run
echo "run.sh: set up in ${SECONDS}s"
mkdir -p "$data"
if ! curl -fsS "$SLIPWAY_URL/api/v1/health" >/dev/null 2>&1; then
  nohup bin/slipway server >>"$data/server.log" 2>&1 &
  echo "started slipway server (pid $!, log $data/server.log)"
  for _ in $(seq 1 120); do
    curl -fsS "$SLIPWAY_URL/api/v1/health" >/dev/null 2>&1 && break
    sleep 0.5
  done
  curl -fsS "$SLIPWAY_URL/api/v1/health" >/dev/null || { tail -n 30 "$data/server.log"; exit 1; }
fi
export SLIPWAY_TOKEN=${SLIPWAY_TOKEN:-$(cat "$data/admin-token")}
bin/slipway deploy examples/hello --project hello
echo
router=${SLIPWAY_ROUTER:-:80}
port=${router##*:}
url=http://127.0.0.1
[ "$port" = 80 ] || url=$url:$port
echo "Through the router (Host header; *.localhost also resolves to loopback in browsers):"
echo "\$ curl -H 'Host: hello.slipway.localhost' $url/"
curl -fsS -H 'Host: hello.slipway.localhost' "$url/"
echo
echo "run.sh: live in ${SECONDS}s. The other base images (python, node) are being made in the"
echo "background; builds that need one wait for it. Progress: grep 'base image' $data/server.log"
