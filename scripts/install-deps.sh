#!/usr/bin/env bash
# Install what `make run` and `make test` need and is missing: Debian packages (through apt) and
# npm packages (web UI and the browser tests). Safe to run again: it installs only what is absent.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(nodejs npm chromium fonts-wqy-microhei poppler-utils openssl curl ca-certificates sip-tester ffmpeg
  gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev pkg-config python3-venv)
[[ "${1:-}" == "--bench" ]] && APT_PACKAGES+=(wrk mosquitto janus)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  # nodejs/npm may come from elsewhere (nvm, NodeSource): a working binary is enough.
  case "$p" in
    nodejs) command -v node >/dev/null 2>&1 && continue ;;
    npm) command -v npm >/dev/null 2>&1 && continue ;;
  esac
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing Debian packages: ${missing[*]}"
  SUDO=""
  [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Python test peers (moto's S3-compatible server for the S3 blob store), in a virtual
# environment inside the checkout, only when missing.
if [[ ! -x .venv-test/bin/moto_server ]]; then
  echo "installing moto[server] into .venv-test"
  rm -rf .venv-test
  python3 -m venv .venv-test
  .venv-test/bin/pip install -q --disable-pip-version-check 'moto[server]>=5.1,<6'
fi

# npm packages, only when the lock file changed since the last install.
for dir in web tests/web; do
  stamp="$dir/node_modules/.installed-lock"
  if [[ ! -f "$stamp" ]] || ! cmp -s "$dir/package-lock.json" "$stamp"; then
    echo "installing npm packages in $dir"
    # `npm install --no-save` rather than `npm ci`: npm 11 writes lock files without the optional
    # per-platform packages of rollup, which `npm ci` then refuses as out of sync.
    (cd "$dir" && npm install --no-save --no-audit --no-fund --loglevel=error)
    cp "$dir/package-lock.json" "$stamp"
  fi
done
