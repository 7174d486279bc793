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

failed=()
ran=0
for t in "${targets[@]}"; do
  dir=${t% *}
  name=${t#* }
  [[ $name =~ $filter ]] || continue
  ran=$((ran + 1))
  echo "==> $name in ./$dir for $fuzztime"
  if ! go test -run='^$' -fuzz="^${name}\$" -fuzztime="$fuzztime" "./$dir"; then
    failed+=("$name (./$dir)")
  fi
done
echo "fuzz.sh: ran $ran targets for $fuzztime each"
if [ ${#failed[@]} -gt 0 ]; then
  printf 'fuzz.sh: FAILED: %s\n' "${failed[@]}" >&2
  exit 1
fi
