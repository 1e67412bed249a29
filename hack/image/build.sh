#!/usr/bin/env bash
# Builds Barge's controller image as an OCI image layout in target/image/,
# without a container engine, and prints the image's digest last.
#
# The image (linux/amd64) is three gzipped tar layers:
#   1. base:  /etc/passwd and /etc/group (root, and nonroot = 65532), the CA
#             bundle at /etc/ssl/certs/ca-certificates.crt (Debian's
#             ca-certificates, Mozilla's roots), /tmp (1777), /home/nonroot
#   2. tools: /usr/local/bin/kustomize and /usr/local/bin/helm, the static
#             (CGO off) binaries hack/control-plane/build.sh builds for the tests
#   3. barge: /barge, a static musl build of the controller (cargo profile
#             "image": release, symbols stripped), whose vendored C code
#             (OpenSSL, libgit2, zlib) is compiled with musl-gcc
# and a config that runs /barge run as 65532:65532, with BARGE_KUSTOMIZE,
# BARGE_HELM and SSL_CERT_FILE set as the Dockerfile sets them.
#
# The build is reproducible: every tar entry has mtime 0, numeric owners and
# explicit modes, entries are sorted, gzip stores no name or time, and the
# config's creation time is the epoch; so the digest changes only when a
# file's content (or the gzip in use) does.
#
# Environment: IMAGE_REPOSITORY (default ghcr.io/barge-dev/barge, the chart's
# image.repository) names the image in the layout's index; the tag is the
# barge crate's version, the chart's appVersion.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"

target=x86_64-unknown-linux-musl
layout="$root/target/image"
stage="$root/target/image-build"
repository=${IMAGE_REPOSITORY:-ghcr.io/barge-dev/barge}
say() { echo "image: $*" >&2; }
die() { echo "image: $*" >&2; exit 1; }

# A program from a Debian package, installed when missing and allowed.
need() { # <command> <package>
  command -v "$1" >/dev/null && return
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing $2 (for $1)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$2" >/dev/null \
      || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$2" >/dev/null; }
  fi
  command -v "$1" >/dev/null || die "$1 is required: install Debian's $2 (apt-get install $2)"
}

# static <file>: fails unless it is an ELF executable with no program
# interpreter and no shared libraries (nothing the image would have to carry).
static() {
  local headers
  headers=$(readelf -l -d "$1" 2>&1) || die "$1: not an ELF file: $headers"
  if grep -q 'INTERP\|(NEEDED)' <<<"$headers"; then
    die "$1 is dynamically linked: $(grep 'interpreter\|(NEEDED)' <<<"$headers" | tr -s ' ' | tr '\n' ' ')"
  fi
}

need musl-gcc musl-tools
need readelf binutils
if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx "$target"; then
  say "adding the Rust target $target"
  rustup target add "$target" >&2
fi
if [ ! -d /usr/share/ca-certificates/mozilla ]; then
  need update-ca-certificates ca-certificates
fi
[ -d /usr/share/ca-certificates/mozilla ] || die "no /usr/share/ca-certificates/mozilla: install Debian's ca-certificates"

version=$(cargo pkgid -p barge)
version=${version##*[@#]}
ref="$repository:$version"

# The controller.
say "building barge $version for $target (cargo profile image)"
start=$SECONDS
CC_x86_64_unknown_linux_musl=musl-gcc \
  cargo build --locked --profile image --target "$target" --bin barge >&2
say "barge built in $((SECONDS - start))s"
barge="${CARGO_TARGET_DIR:-$root/target}/$target/image/barge"
static "$barge"

# kustomize and helm, as the tests run them.
bin=$(bash hack/control-plane/build.sh | tail -n 1)
for tool in kustomize helm; do static "$bin/$tool"; done

# The file systems of the three layers.
rm -rf "$stage"
mkdir -p "$stage"/base/etc/ssl/certs "$stage"/base/tmp "$stage"/base/home/nonroot \
  "$stage"/tools/usr/local/bin "$stage"/barge
printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' \
  'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' > "$stage/base/etc/passwd"
printf '%s\n' 'root:x:0:' 'nonroot:x:65532:' > "$stage/base/etc/group"
# Mozilla's roots as Debian ships them, without what this machine added
# (/usr/local/share/ca-certificates): the same bundle on every build host
# with the same ca-certificates.
find /usr/share/ca-certificates/mozilla -name '*.crt' -print0 | LC_ALL=C sort -z \
  | xargs -0 cat > "$stage/base/etc/ssl/certs/ca-certificates.crt"
grep -q 'BEGIN CERTIFICATE' "$stage/base/etc/ssl/certs/ca-certificates.crt" || die "the CA bundle is empty"
cp "$bin/kustomize" "$bin/helm" "$stage/tools/usr/local/bin/"
cp "$barge" "$stage/barge/barge"
find "$stage" -type d -exec chmod 0755 {} +
find "$stage" -type f -exec chmod 0644 {} +
chmod 0755 "$stage"/tools/usr/local/bin/* "$stage/barge/barge"
chmod 1777 "$stage/base/tmp"

# tar <dir> <out.tar> [<entry owned by 65532>...]: a reproducible tar of the
# directory's content (ustar, sorted, mtime 0, owner root unless listed).
tarball() {
  local dir=$1 out=$2
  shift 2
  local common=(--format=ustar --sort=name --mtime=@0 --numeric-owner --no-acls --no-xattrs --no-selinux -C "$dir")
  local entries
  mapfile -t entries < <(cd "$dir" && LC_ALL=C ls -A)
  local exclude=()
  for entry in "$@"; do exclude+=(--exclude="./$entry" --exclude="$entry"); done
  LC_ALL=C tar --create --file="$out" --owner=0 --group=0 "${exclude[@]}" "${common[@]}" "${entries[@]}"
  if [ $# -gt 0 ]; then
    LC_ALL=C tar --append --file="$out" --owner=65532 --group=65532 --no-recursion "${common[@]}" "$@"
  fi
}

rm -rf "$layout"
mkdir -p "$layout/blobs/sha256"
blob() { # <file>: moves it into the layout's blobs; prints its digest
  local digest
  digest=$(sha256sum "$1" | cut -d' ' -f1)
  mv "$1" "$layout/blobs/sha256/$digest"
  echo "$digest"
}
size() { stat -c %s "$1"; }

layers=() diff_ids=() packed=0 unpacked=0
for layer in base tools barge; do
  if [ "$layer" = base ]; then
    tarball "$stage/$layer" "$stage/$layer.tar" home/nonroot
  else
    tarball "$stage/$layer" "$stage/$layer.tar"
  fi
  diff_ids+=("sha256:$(sha256sum "$stage/$layer.tar" | cut -d' ' -f1)")
  unpacked=$((unpacked + $(size "$stage/$layer.tar")))
  gzip -n -6 < "$stage/$layer.tar" > "$stage/$layer.tar.gz"
  rm "$stage/$layer.tar"
  bytes=$(size "$stage/$layer.tar.gz")
  packed=$((packed + bytes))
  digest=$(blob "$stage/$layer.tar.gz")
  layers+=("{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"sha256:$digest\",\"size\":$bytes}")
  say "layer $layer: sha256:$digest, $bytes bytes"
done
join() { local IFS=,; echo "$*"; }
quoted() { local out=() item; for item in "$@"; do out+=("\"$item\""); done; join "${out[@]}"; }

config="$stage/config.json"
printf '%s' "{\"created\":\"1970-01-01T00:00:00Z\",\"architecture\":\"amd64\",\"os\":\"linux\",\
\"config\":{\"User\":\"65532:65532\",\
\"ExposedPorts\":{\"8080/tcp\":{}},\
\"Env\":[$(quoted PATH=/usr/local/bin:/usr/bin:/bin SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
  BARGE_KUSTOMIZE=/usr/local/bin/kustomize BARGE_HELM=/usr/local/bin/helm)],\
\"Entrypoint\":[\"/barge\"],\"Cmd\":[\"run\"],\"WorkingDir\":\"/\",\
\"Labels\":{\"org.opencontainers.image.description\":\"Kubernetes promotion controller\",\
\"org.opencontainers.image.licenses\":\"Apache-2.0\",\
\"org.opencontainers.image.title\":\"barge\",\
\"org.opencontainers.image.version\":\"$version\"}},\
\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[$(quoted "${diff_ids[@]}")]}}" > "$config"
config_size=$(size "$config")
config_digest=$(blob "$config")

manifest="$stage/manifest.json"
printf '%s' "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\
\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"sha256:$config_digest\",\"size\":$config_size},\
\"layers\":[$(join "${layers[@]}")]}" > "$manifest"
manifest_size=$(size "$manifest")
manifest_digest=$(blob "$manifest")

printf '%s' '{"imageLayoutVersion":"1.0.0"}' > "$layout/oci-layout"
printf '%s' "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\",\
\"manifests\":[{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"sha256:$manifest_digest\",\"size\":$manifest_size,\
\"platform\":{\"architecture\":\"amd64\",\"os\":\"linux\"},\
\"annotations\":{\"io.containerd.image.name\":\"$ref\",\"org.opencontainers.image.ref.name\":\"$version\"}}]}" > "$layout/index.json"
rm -rf "$stage"

say "$ref: $packed bytes of compressed layers, $unpacked bytes unpacked (tar), in $layout"
echo "sha256:$manifest_digest"
