#!/usr/bin/env bash
# Builds etcd, kube-apiserver, kubectl, helm and kustomize from the Go module proxy into
# $HOME/.cache/barge/k8s-<version>/bin and prints that directory as its last line.
# Versions come from the go.mod files next to this script, so they are pinned in one place.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

modver() { # <dir> <module>: the version the wrapper module requires
  (cd "$here/$1" && go list -m -f '{{.Version}}' "$2")
}

k8s=$(modver kube k8s.io/kubernetes)
etcd=$(modver etcd go.etcd.io/etcd/server/v3)
helm=$(modver helm helm.sh/helm/v3)
kustomize=$(modver kustomize sigs.k8s.io/kustomize/kustomize/v5)
minor=$(echo "${k8s#v}" | cut -d. -f2)

out="${BARGE_CACHE:-$HOME/.cache/barge}/k8s-${k8s#v}/bin"
mkdir -p "$out"
export CGO_ENABLED=0 GOFLAGS=-mod=mod

# build <name> <version> <module dir> <package> [ldflags]: skips a binary already built at that version.
build() {
  local name=$1 version=$2 dir=$3 pkg=$4 ldflags=${5:-}
  if [ -x "$out/$name" ] && [ "$(cat "$out/$name.version" 2>/dev/null)" = "$version" ]; then
    echo "control-plane: $name $version already built" >&2
    return
  fi
  echo "control-plane: building $name $version" >&2
  local start=$SECONDS
  (cd "$here/$dir" && go build -trimpath -ldflags "-s -w $ldflags" -o "$out/$name.tmp" "$pkg")
  mv "$out/$name.tmp" "$out/$name"
  echo "$version" > "$out/$name.version"
  echo "control-plane: built $name in $((SECONDS - start))s" >&2
}

kver="-X k8s.io/component-base/version.gitVersion=$k8s -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"
build etcd "$etcd" etcd go.etcd.io/etcd/server/v3
build kube-apiserver "$k8s" kube k8s.io/kubernetes/cmd/kube-apiserver "$kver"
build kubectl "$k8s" kube k8s.io/kubernetes/cmd/kubectl "$kver"
build helm "$helm" helm helm.sh/helm/v3/cmd/helm "-X helm.sh/helm/v3/internal/version.version=$helm"
# kustomize reports its version from build info, which go build (module mode) fills in.
build kustomize "$kustomize" kustomize sigs.k8s.io/kustomize/kustomize/v5

echo "$out"
