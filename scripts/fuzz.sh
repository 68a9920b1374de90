#!/usr/bin/env bash
# Run every fuzz target for N seconds (default 10): `make fuzz-short` in `make test`,
# `make fuzz` for long runs. cargo fuzz needs nightly features: RUSTC_BOOTSTRAP=1 on stable.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs="${1:-10}"
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for t in table uscc search jt808 dispatch_ws sip manscdp ps rtp mp4 mp4_recover mp4_demux; do
  mkdir -p "corpus/$t"
  cp -n corpus-seed/"$t"/* "corpus/$t/" 2>/dev/null || true
  echo "fuzzing $t for ${secs}s"
  if ! cargo fuzz build "$t" >"$log" 2>&1; then
    cat "$log"
    echo "fuzz target $t does not build"
    exit 1
  fi
  # -timeout: one input slower than 5 s is a failure (a parser's cost must follow its input).
  if ! cargo fuzz run "$t" "corpus/$t" -- -max_total_time="$secs" -timeout=5 -rss_limit_mb=2048 >"$log" 2>&1; then
    cat "$log"
    echo "fuzz target $t failed; the crashing input is under fuzz/artifacts/$t/"
    exit 1
  fi
  grep -E "^Done [0-9]+ runs" "$log" || tail -n 2 "$log"
done
