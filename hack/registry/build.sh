#!/usr/bin/env bash
# Builds the CNCF distribution registry (an OCI distribution API server) from
# the Go module proxy into $HOME/.cache/barge/registry-<version>/registry, for
# the Warehouse tests' image and OCI chart repositories. Skips it when built;
# prints the directory last.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
export CGO_ENABLED=0 GOFLAGS=-mod=mod

version=$(go list -m -f '{{.Version}}' github.com/distribution/distribution/v3)
out="${BARGE_CACHE:-$HOME/.cache/barge}/registry-${version#v}"
mkdir -p "$out"
if [ -x "$out/registry" ] && [ "$(cat "$out/registry.version" 2>/dev/null)" = "$version" ]; then
  echo "registry: $version already built" >&2
else
  echo "registry: building $version" >&2
  start=$SECONDS
  go build -trimpath -ldflags "-s -w" -o "$out/registry.tmp" github.com/distribution/distribution/v3/cmd/registry
  mv "$out/registry.tmp" "$out/registry"
  echo "$version" > "$out/registry.version"
  echo "registry: built in $((SECONDS - start))s" >&2
fi
echo "$out"
