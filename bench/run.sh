#!/usr/bin/env bash
# Runs Slipway's benchmarks and writes BENCHMARKS.md: the figures, their
# ratios to baselines measured in the same run, the machine, the date and
# the exact commands. Run as root on a machine set up by scripts/setup.sh
# (runc, buildkitd, base images); wrk and nginx are installed from Debian
# when missing. The whole run is bounded (about 25-35 minutes on 2 cores,
# most of it the microvm sandbox's boots under TCG where KVM does not work).
#
#   sudo bash bench/run.sh            # writes BENCHMARKS.md
#   BENCH_QUICK=1 bash bench/run.sh   # short runs, to check the script
#   BENCH_OUT=/tmp/b.md bash bench/run.sh
#   BENCH_BASELINE=cb35ba0 bash bench/run.sh  # the router of that commit too, side by side
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
if [ "$(id -u)" -ne 0 ]; then
  echo "bench/run.sh: run as root (sudo): the benchmarks start runc sandboxes" >&2
  exit 1
fi
export PATH=/usr/local/go/bin:$PATH
export SLIPWAY_BASE_IMAGES=${SLIPWAY_BASE_IMAGES:-/var/lib/slipway/base-images}
out=${BENCH_OUT:-$root/BENCHMARKS.md}
for cmd in runc buildkitd go ip; do
  command -v "$cmd" >/dev/null || { echo "bench/run.sh: $cmd missing; run scripts/setup.sh first" >&2; exit 1; }
done
[ -f "$SLIPWAY_BASE_IMAGES/index.json" ] || { echo "bench/run.sh: no base images in $SLIPWAY_BASE_IMAGES; run scripts/setup.sh first" >&2; exit 1; }

# wrk and nginx from Debian, without letting the nginx package start a
# server on port 80.
need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || need+=(nginx)
if [ ${#need[@]} -gt 0 ]; then
  policy_added=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    policy_added=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
  [ -n "$policy_added" ] && rm -f /usr/sbin/policy-rc.d
fi

work=$(mktemp -d /tmp/slipway-bench.XXXXXX)
cleanup() {
  "$work/bin/sweep" "$work"/data-* 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

echo "==> building (work directory $work)"
mkdir -p "$work/bin" "$work/results"
go build -o "$work/bin/slipway" ./cmd/slipway
for p in routerbench pushbench wakebench sandboxbench densitybench summary sweep; do
  go build -o "$work/bin/$p" "./bench/$p"
done
# Egress throughput is a Go benchmark beside the stand-in internet it
# needs (internal/netns/nettest); egress_md turns its output into a table.
go test -c -o "$work/bin/netns.test" ./internal/netns

# The Python app measured: flask-pip, whose dependencies the offline python
# stand-in already carries (fastapi-uv needs PyPI to install uv). Override
# with BENCH_PYTHON=examples/fastapi-uv on a host with PyPI.
python=${BENCH_PYTHON:-examples/flask-pip}
[ -d "$python" ] || python=

if [ -n "${BENCH_QUICK:-}" ]; then
  router_args=(-duration 2s -rounds 1)
  push_args=(-warm 1)
  wake_args=(-wakes 3)
  snapshot_args=(-wakes 3)
  sandbox_args=(-samples 2 -rounds 1 -duration 2s)
  density_args=(-steps 1000 -max-running 20 -budget 2m)
  egress_args=(-test.benchtime 1s -test.count 1)
else
  router_args=(-duration 6s -rounds 3)
  push_args=(-warm 5)
  wake_args=(-wakes 25)
  snapshot_args=(-wakes 15)
  sandbox_args=(-samples 5 -rounds 2 -duration 5s)
  density_args=(-steps 1000,10000 -max-running 200 -budget 8m)
  egress_args=(-test.benchtime 3s -test.count 5)
fi
# hello in the gvisor sandbox too, where runsc is installed.
command -v runsc >/dev/null && wake_args+=(-gvisor)
# And in the microvm sandbox, where QEMU and the guest kernel are installed.
command -v qemu-system-x86_64 >/dev/null && [ -x /usr/local/lib/slipway/microvm/slipway-init ] && wake_args+=(-microvm)
# sandboxbench: the same sandboxes, where they are installed.
command -v runsc >/dev/null && sandbox_args+=(-gvisor)
command -v qemu-system-x86_64 >/dev/null && [ -x /usr/local/lib/slipway/microvm/slipway-init ] && sandbox_args+=(-microvm)

# egress_md FILE: the median MB/s of BenchmarkEgress's host and instance
# runs in FILE (go test -bench output), as a markdown section.
egress_md() {
  awk '
    /^BenchmarkEgress\/(host|instance)/ {
      split($1, n, "/"); sub(/-[0-9]+$/, "", n[2])
      for (i = 2; i <= NF; i++) if ($(i) == "MB/s") v[n[2]] = v[n[2]] " " $(i-1)
    }
    function median(s,   a, k, i, j, t) {
      k = split(s, a, " ")
      for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
      return k % 2 ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2
    }
    END {
      if (v["host"] == "" || v["instance"] == "") { print "## Egress\n\nNo figures: the benchmark did not run.\n"; exit 1 }
      h = median(v["host"]); i = median(v["instance"])
      print "## Egress\n"
      print "TCP throughput to a sink in the stand-in internet (a network namespace on a veth), one"
      print "connection writing 1 MiB at a time: from an app'"'"'s network namespace on Slipway'"'"'s bridge (veth,"
      print "bridge, forwarding, Slipway'"'"'s nftables policy, conntrack, masquerade) against the host itself"
      print "over the same link. Median of the runs.\n"
      print "| from | MB/s | runs |"
      print "|---|---:|---|"
      printf "| host (baseline) | %.0f |%s |\n", h, v["host"]
      printf "| app on the bridge | %.0f |%s |\n", i, v["instance"]
      printf "\nApp / host: **%.2f×**.\n\n", i / h
    }' "$1"
}

# The previous build's router, measured in the same rounds (routerbench
# -baseline): BENCH_BASELINE names a commit of this repository.
if [ -n "${BENCH_BASELINE:-}" ]; then
  echo "==> building the baseline router from $BENCH_BASELINE"
  mkdir -p "$work/baseline"
  git archive "$BENCH_BASELINE" | tar -x -C "$work/baseline"
  (cd "$work/baseline" && go build -o "$work/bin/routerbench-baseline" ./bench/routerbench)
  router_args+=(-baseline "$work/bin/routerbench-baseline")
fi

commands=()
# run NAME CMD...: runs a benchmark, records its command line (with the
# work directory shown as $WORK) and how long it took.
run() {
  local name=$1
  shift
  local shown="${*//$work/\$WORK}"
  commands+=("$shown")
  echo "==> $name: $shown"
  local t0=$SECONDS
  if ! "$@"; then
    echo "bench/run.sh: $name failed" >&2
    printf '## %s\n\nThis benchmark failed in this run; see the output of bench/run.sh.\n\n' "$name" > "$work/results/$name.md"
  fi
  echo "    ($((SECONDS - t0)) s)"
}

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
started=$(date -u '+%Y-%m-%d %H:%M UTC')
t_start=$SECONDS

run router "$work/bin/routerbench" "${router_args[@]}" -out "$work/results/router.md" -json "$work/results/router.json"
run push "$work/bin/pushbench" -bin "$work/bin/slipway" -data "$work/data-push" -hello examples/hello ${python:+-python "$python"} \
  "${push_args[@]}" -out "$work/results/push.md" -json "$work/results/push.json"
run wake "$work/bin/wakebench" -bin "$work/bin/slipway" -data "$work/data-push" -hello examples/hello ${python:+-python "$python"} \
  "${wake_args[@]}" -out "$work/results/wake.md" -json "$work/results/wake.json"
# The Flask app's snapshot wakes on gvisor (beside its cold start and its
# cold wakes), where runsc is installed.
if command -v runsc >/dev/null && [ -n "$python" ]; then
  run wake-snapshot "$work/bin/wakebench" -snapshot -bin "$work/bin/slipway" -data "$work/data-push" -python "$python" \
    "${snapshot_args[@]}" -out "$work/results/wake-snapshot.md" -json "$work/results/wake-snapshot.json"
fi
run sandbox "$work/bin/sandboxbench" -bin "$work/bin/slipway" -data "$work/data-push" -hello examples/hello ${python:+-python "$python"} \
  "${sandbox_args[@]}" -out "$work/results/sandbox.md" -json "$work/results/sandbox.json"
run density "$work/bin/densitybench" -bin "$work/bin/slipway" -data "$work/data-push" -idle-data "$work/data-idle" -hello examples/hello \
  "${density_args[@]}" -out "$work/results/density.md" -json "$work/results/density.json"
run egress sh -c "\"$work/bin/netns.test\" -test.run '^\$' -test.bench '^BenchmarkEgress\$' ${egress_args[*]} > \"$work/results/egress.txt\""
egress_md "$work/results/egress.txt" > "$work/results/egress.md" || true
"$work/bin/summary" -dir "$work/results" -out "$work/results/summary.md"

elapsed=$((SECONDS - t_start))
load_end=$(cut -d' ' -f1-3 /proc/loadavg)
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD 2>/dev/null || commit="$commit (with uncommitted changes)"
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
mem=$(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)

{
  echo "# Benchmarks"
  echo
  echo "Generated by \`bench/run.sh\` — do not edit by hand; run \`sudo bash bench/run.sh\` again."
  echo
  echo "| | |"
  echo "|---|---|"
  echo "| date | $started (the run took $((elapsed / 60)) min $((elapsed % 60)) s) |"
  echo "| machine | $cpu, $(nproc) cores, $mem RAM |"
  echo "| system | Debian $(cat /etc/debian_version 2>/dev/null || echo ?), kernel $(uname -r) |"
  echo "| software | $(go version | cut -d' ' -f3), $(runc --version | head -1), buildkitd $(buildkitd --version 2>/dev/null | awk '{print $3}'), $(nginx -v 2>&1 | cut -d' ' -f3), $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2) |"
  echo "| slipway | commit $commit |"
  echo "| load average | $load_start at the start, $load_end at the end (1, 5, 15 min) |"
  echo
  echo "Every figure comes from this one run on this one machine, and every ratio compares two figures"
  echo "measured side by side in it. The machine is shared (see the load average): absolute numbers"
  echo "move from run to run, ratios less."
  echo
  for f in summary router wake wake-snapshot push density sandbox egress; do
    [ -f "$work/results/$f.md" ] && cat "$work/results/$f.md"
  done
  echo "## Commands"
  echo
  echo "As run by \`bench/run.sh\` (\$WORK is its temporary directory; the programs are built from \`bench/\`):"
  echo
  echo '```'
  for c in "${commands[@]}"; do echo "$c"; done
  echo '```'
} > "$out"
echo "==> wrote $out"
