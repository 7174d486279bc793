#!/usr/bin/env bash
# Runs every fuzz target of the repository (every `func FuzzXxx` in a
# *_test.go file) for a bounded time each, one after the other.
#
#   bash test/fault/fuzz.sh              # 10 s per target
#   FUZZTIME=1m bash test/fault/fuzz.sh  # longer
#   bash test/fault/fuzz.sh FuzzExtract  # only targets matching a regexp
#
# A target that fails leaves its failing input in the package's
# testdata/fuzz/<target>/ (commit it: it becomes a regression test) and
# makes the script exit non-zero after all targets have run. The seed
# corpora under testdata/fuzz also run with plain `go test ./...`.
#
# Go 1.26's fuzz coordinator can report a bare "context deadline exceeded"
# when -fuzztime runs out while a worker is mid-call on a loaded machine
# (go.dev/issue/75804, fixed in Go 1.27). That failure writes no input and
# says nothing about our code, so such a run is repeated, up to three
# attempts in all; any other failure, or a failing input written, fails.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH=/usr/local/go/bin:$PATH
fuzztime=${FUZZTIME:-10s}
filter=${1:-.}

mapfile -t targets < <(
  grep -rEo --include='*_test.go' '^func Fuzz[A-Za-z0-9_]*\(' . \
    | grep -v '/testdata/' \
    | sed -E 's#^\./(.*)/[^/]+_test\.go:func (Fuzz[A-Za-z0-9_]*)\($#\1 \2#' \
    | sort -u
)
if [ ${#targets[@]} -eq 0 ]; then
  echo "fuzz.sh: no fuzz targets found" >&2
  exit 1
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT

# coordinator_race reports whether the run logged in $log failed only with
# the fuzz coordinator's spurious deadline error and wrote no failing input.
coordinator_race() {
  local dir=$1 name=$2 before=$3
  grep -q 'Failing input written to' "$log" && return 1
  [ "$(corpus_files "$dir" "$name")" = "$before" ] || return 1
  grep -A1 -E "^--- FAIL: $name " "$log" | tail -n1 | grep -qx '[[:space:]]*context deadline exceeded'
}

corpus_files() {
  ls "$1/testdata/fuzz/$2" 2>/dev/null | sort | tr '\n' ' '
}

fuzz_one() {
  local dir=$1 name=$2 attempt before
  for attempt in 1 2 3; do
    echo "==> $name in ./$dir for $fuzztime (attempt $attempt)"
    before=$(corpus_files "$dir" "$name")
    if go test -run='^$' -fuzz="^${name}\$" -fuzztime="$fuzztime" "./$dir" 2>&1 | tee "$log"; then
      return 0
    fi
    if ! coordinator_race "$dir" "$name" "$before"; then
      return 1
    fi
    echo "fuzz.sh: $name: spurious \"context deadline exceeded\" from the fuzz coordinator (go.dev/issue/75804), no failing input; running it again"
  done
  return 1
}

failed=()
ran=0
for t in "${targets[@]}"; do
  dir=${t% *}
  name=${t#* }
  [[ $name =~ $filter ]] || continue
  ran=$((ran + 1))
  if ! fuzz_one "$dir" "$name"; then
    failed+=("$name (./$dir)")
  fi
done
echo "fuzz.sh: ran $ran targets for $fuzztime each"
if [ ${#failed[@]} -gt 0 ]; then
  printf 'fuzz.sh: FAILED: %s\n' "${failed[@]}" >&2
  exit 1
fi
