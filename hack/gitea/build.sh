#!/usr/bin/env bash
# Builds Gitea from the Go module proxy into $HOME/.cache/barge/gitea-<version>/:
# the binary, and the templates and options it reads at run time (copied from
# the module, since the build has no bindata). The pull-request step tests start
# it as their Git host. Skips what is already built; prints the directory last.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"

# Gitea's SQLite driver needs cgo.
export CGO_ENABLED=1 GOFLAGS=-mod=mod

version=$(go list -m -f '{{.Version}}' code.gitea.io/gitea)
out="${BARGE_CACHE:-$HOME/.cache/barge}/gitea-${version#v}"
mkdir -p "$out"

if [ -x "$out/gitea" ] && [ "$(cat "$out/gitea.version" 2>/dev/null)" = "$version" ]; then
  echo "gitea: $version already built" >&2
else
  echo "gitea: building $version (8-11 minutes on 2 cores, once)" >&2
  start=$SECONDS
  go build -trimpath -tags 'sqlite sqlite_unlock_notify' \
    -ldflags "-s -w -X main.Version=${version#v}" -o "$out/gitea.tmp" code.gitea.io/gitea
  mv "$out/gitea.tmp" "$out/gitea"
  echo "$version" > "$out/gitea.version"
  echo "gitea: built in $((SECONDS - start))s" >&2
fi

# STATIC_ROOT_PATH: templates and options (module files are read-only; copy them
# so the cache does not depend on the module cache being kept).
if [ ! -d "$out/static/templates" ]; then
  module=$(go list -m -f '{{.Dir}}' code.gitea.io/gitea)
  rm -rf "$out/static.tmp" && mkdir -p "$out/static.tmp"
  cp -r "$module/templates" "$module/options" "$out/static.tmp/"
  chmod -R u+w "$out/static.tmp"
  mv "$out/static.tmp" "$out/static"
fi

echo "$out"
