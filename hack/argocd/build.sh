#!/usr/bin/env bash
# Builds Argo CD's application-controller and repo-server (one multi-call binary
# of our own, cmd/argocd) and a redis-compatible server (cmd/miniredis) from the
# Go module proxy into $HOME/.cache/barge/argocd-<version>/, next to the
# Application and AppProject CRDs and git-verify-wrapper.sh from the same module.
# Skips what is already built; prints the directory as its last line.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"

# Argo CD v3.6 declares go 1.27: let the go command fetch that toolchain once.
export GOTOOLCHAIN="${BARGE_ARGOCD_GOTOOLCHAIN:-go1.27.4}" CGO_ENABLED=0 GOFLAGS=-mod=mod

version=$(go list -m -f '{{.Version}}' github.com/argoproj/argo-cd/v3)
out="${BARGE_CACHE:-$HOME/.cache/barge}/argocd-${version#v}"
mkdir -p "$out"

# build <name> <package> [ldflags]: skips a binary already built at this version.
build() {
  local name=$1 pkg=$2 ldflags=${3:-}
  if [ -x "$out/$name" ] && [ "$(cat "$out/$name.version" 2>/dev/null)" = "$version" ]; then
    echo "argocd: $name $version already built" >&2
    return
  fi
  echo "argocd: building $name $version (Argo CD takes 5-10 minutes on 2 cores, once)" >&2
  local start=$SECONDS
  go build -trimpath -ldflags "-s -w $ldflags" -o "$out/$name.tmp" "$pkg"
  mv "$out/$name.tmp" "$out/$name"
  echo "$version" > "$out/$name.version"
  echo "argocd: built $name in $((SECONDS - start))s" >&2
}

build argocd ./cmd/argocd "-X github.com/argoproj/argo-cd/v3/common.version=${version#v}"
build miniredis ./cmd/miniredis

# Manifests and the script the repo-server runs for every manifest generation.
# Module files are read-only: copy, then make the script executable.
module=$(go list -m -f '{{.Dir}}' github.com/argoproj/argo-cd/v3)
mkdir -p "$out/crds"
for crd in application-crd.yaml appproject-crd.yaml; do
  install -m 0644 "$module/manifests/crds/$crd" "$out/crds/$crd"
done
install -m 0755 "$module/hack/git-verify-wrapper.sh" "$out/git-verify-wrapper.sh"

echo "$out"
