#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine for Slipway's tests and runs them all,
# the integration tests included (they need root, runc, buildkitd and the
# base images, and fail loudly when one is missing).
set -euo pipefail
cd "$(dirname "$0")/.."
export SLIPWAY_BASE_IMAGES=${SLIPWAY_BASE_IMAGES:-/var/lib/slipway/base-images}
bash scripts/setup.sh
export PATH=/usr/local/go/bin:$PATH
export CI=${CI:-true}
test -z "$(gofmt -l cmd internal bench test)" || { gofmt -l cmd internal bench test; echo "gofmt: files above need formatting" >&2; exit 1; }
go vet ./...
# scripts/run.sh builds slipway with the nokubernetes tag: keep that build sound.
go vet -tags nokubernetes ./internal/server ./cmd/slipway
go test -count=1 -timeout 45m ./...
go test -count=1 -tags nokubernetes -run TestValidateRuntime ./internal/server
# Every fuzz target, for a bounded time each (seed corpora are in testdata/fuzz).
FUZZTIME=${FUZZTIME:-10s} bash test/fault/fuzz.sh
