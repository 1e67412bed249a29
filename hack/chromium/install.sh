#!/usr/bin/env bash
# Installs headless Chromium (Debian's chromium package) for the dashboard's
# browser tests (tests/dashboard.rs) when it is missing; prints the binary's
# path last. Needs root (or sudo) for apt-get.
set -euo pipefail

find_chromium() {
  if [ -n "${BARGE_CHROMIUM:-}" ] && [ -x "$BARGE_CHROMIUM" ]; then
    echo "$BARGE_CHROMIUM"
    return 0
  fi
  command -v chromium || command -v chromium-browser || command -v google-chrome
}

if bin=$(find_chromium); then
  echo "chromium: already installed" >&2
else
  echo "chromium: installing Debian's chromium package" >&2
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "chromium: apt-get needs root: run as root or install sudo" >&2; exit 1; }
    sudo=sudo
  fi
  start=$SECONDS
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium >&2
  echo "chromium: installed in $((SECONDS - start))s" >&2
  bin=$(find_chromium)
fi
"$bin" --version >&2 || true
echo "$bin"
