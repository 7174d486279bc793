#!/usr/bin/env bash
# Slipway's main job on a fresh Debian 12 machine: set up, start the server in
# the background, deploy examples/hello and print its URL (and what it answers).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
data=${SLIPWAY_DATA:-/var/lib/slipway}
export SLIPWAY_DATA=$data
# The server reads the base images where setup.sh wrote them, whatever the
# data directory.
export SLIPWAY_BASE_IMAGES=${SLIPWAY_BASE_IMAGES:-/var/lib/slipway/base-images}
export SLIPWAY_URL=${SLIPWAY_URL:-http://127.0.0.1:7300}
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
echo "Through the router (Host header; *.localhost also resolves to loopback in browsers):"
echo "\$ curl -H 'Host: hello.slipway.localhost' http://127.0.0.1/"
curl -fsS -H 'Host: hello.slipway.localhost' http://127.0.0.1/
