#!/usr/bin/env bash
# Builds crane (go-containerregistry's command-line registry client) from the
# Go module proxy into $HOME/.cache/barge/crane-<version>/crane, for
# `make image-push` and `make image-verify`, which push the OCI image layout
# `make image` writes. The version is pinned in go.mod next to this script.
# Skips it when built; prints the directory last.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
export CGO_ENABLED=0 GOFLAGS=-mod=mod

version=$(go list -m -f '{{.Version}}' github.com/google/go-containerregistry)
out="${BARGE_CACHE:-$HOME/.cache/barge}/crane-${version#v}"
mkdir -p "$out"
if [ -x "$out/crane" ] && [ "$(cat "$out/crane.version" 2>/dev/null)" = "$version" ]; then
  echo "crane: $version already built" >&2
else
  echo "crane: building $version" >&2
  start=$SECONDS
  go build -trimpath -ldflags "-s -w -X github.com/google/go-containerregistry/cmd/crane/cmd.Version=$version" \
    -o "$out/crane.tmp" github.com/google/go-containerregistry/cmd/crane
  mv "$out/crane.tmp" "$out/crane"
  echo "$version" > "$out/crane.version"
  echo "crane: built in $((SECONDS - start))s" >&2
fi
echo "$out"
