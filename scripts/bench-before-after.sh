#!/usr/bin/env bash
# Run the benchmarks of the device-facing paths (live positions, GB/T 28181 signalling, live
# video) with two release builds back to back on the same machine: the commit before a change
# and the change. Each benchmark runs with the old binary, then at once with the new one.
#
#   scripts/bench-before-after.sh OLD_BINARY NEW_BINARY [OUT_DIR]
#
# Build each binary with `cargo build --release -p shouhu-api --bin shouhu` in a checkout of its
# commit (e.g. `git worktree add /tmp/base COMMIT`). Nothing else heavy may run meanwhile.
# Output: one log per benchmark and binary in OUT_DIR (default bench-out/), the figures are the
# benchmarks' own summaries at the end of each log.
set -euo pipefail
old="${1:?old binary}"
new="${2:?new binary}"
out="${3:-bench-out}"
mkdir -p "$out"
run() {
  local name="$1"
  shift
  for which in old new; do
    local bin="$old"
    [[ $which == new ]] && bin="$new"
    echo "== $name ($which: $bin)"
    SHOUHU_LOG=off "$bin" bench "$@" >"$out/$name.$which.log" 2>&1 || {
      echo "   failed; see $out/$name.$which.log"
      continue
    }
    tail -n 25 "$out/$name.$which.log"
  done
}
run positions positions --skip-compare
run sip sip --devices 5000 --duration 60
run live live --skip-janus
