#!/usr/bin/env bash
# Start `shouhu demo` (with its simulated vehicles and phone apps) on free ports with a throw-away data directory, wait until it answers,
# run the Playwright suite against it in Debian's chromium, stop the server.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
bin="${SHOUHU_BIN:-$root/target/debug/shouhu}"
[[ -x "$bin" ]] || { echo "no shouhu binary at $bin (build it first)"; exit 1; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
port=$(free_port)
mport=$(free_port)
data=$(mktemp -d)
log="$data/demo.log"
# Stop the server and keep the suite's exit status (not the server's SIGTERM status).
cleanup() {
  local rc=$?
  if [[ -n "${pid:-}" ]]; then
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  # Keep the server's log beside the screenshots for a failed run.
  [[ -f "$log" ]] && mkdir -p "$here/artifacts" && cp "$log" "$here/artifacts/demo.log"
  rm -rf "$data"
  exit "$rc"
}
trap cleanup EXIT

# No subshell: $! must be the server itself, so that the cleanup's kill reaches it.
SHOUHU__SERVER__DATA_DIR="$data" SHOUHU__HTTP__LISTEN="127.0.0.1:$port" \
  SHOUHU__METRICS__LISTEN="127.0.0.1:$mport" SHOUHU__HTTP__WEB_DIR="$root/web/dist" \
  SHOUHU__JT808__LISTEN="127.0.0.1:0" SHOUHU__SIP__LISTEN="127.0.0.1:0" SHOUHU__MEDIA__GRACE_SECS=2 \
  "$bin" demo --enterprises 120 >"$log" 2>&1 &
pid=$!
for _ in $(seq 1 120); do
  curl -sf "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
  kill -0 "$pid" 2>/dev/null || { cat "$log"; echo "shouhu demo exited"; exit 1; }
  sleep 0.5
done
curl -sf "http://127.0.0.1:$port/healthz" >/dev/null || { cat "$log"; echo "shouhu demo did not come up"; exit 1; }

cd "$here"
mkdir -p artifacts
SHOUHU_URL="http://127.0.0.1:$port" SHOUHU_ADMIN_USER=admin SHOUHU_ADMIN_PASSWORD='Shouhu@2026' \
  SHOUHU_REQUIRE=1 node --test --test-concurrency=1 ${SHOUHU_E2E_FILES:-office.test.mjs dispatch.test.mjs live.test.mjs enforcement.test.mjs recordings.test.mjs terminals.test.mjs}
