#!/usr/bin/env bash
# Builds cargo-deny (the dependency policy check: licenses, banned and
# duplicate crates, sources) from crates.io into
# $HOME/.cache/barge/cargo-deny-<version>/bin. Skips it when built; prints the
# binary's path last.
set -euo pipefail

version=0.20.2
out="${BARGE_CACHE:-$HOME/.cache/barge}/cargo-deny-$version"
bin="$out/bin/cargo-deny"
if [ -x "$bin" ] && "$bin" --version 2>/dev/null | grep -q " $version"; then
  echo "cargo-deny: $version already built" >&2
else
  echo "cargo-deny: building $version" >&2
  start=$SECONDS
  # Its own target directory: the project's holds the project's artefacts.
  scratch=$(mktemp -d)
  trap 'rm -rf "$scratch"' EXIT
  CARGO_TARGET_DIR="$scratch" cargo install --quiet --locked cargo-deny --version "$version" --root "$out"
  echo "cargo-deny: built in $((SECONDS - start))s" >&2
fi
echo "$bin"
