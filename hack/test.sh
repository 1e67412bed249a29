#!/usr/bin/env bash
# Runs every test binary of the workspace, two at a time (BARGE_TEST_LANES).
#
# `cargo test` runs its binaries one after another, and most of their time is
# spent waiting on the API servers, Argo CD and Gitea each binary starts; two
# lanes halve the wall time on two cores. Binaries (not single tests) are the
# unit because each shares one control plane among its tests.
#
# The longest binaries go first (times from the previous run, kept in the
# target directory), and each binary's output is printed whole when it ends.
set -euo pipefail
cd "$(dirname "$0")/.."

lanes="${BARGE_TEST_LANES:-2}"
target="${CARGO_TARGET_DIR:-target}"
mkdir -p "$target"
times="$target/barge-test-times"
touch "$times"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cargo=${CARGO:-cargo}
"$cargo" test --workspace --no-run --message-format=json-render-diagnostics >"$work/build.json"

# One line per test binary: "<name> <executable> <package dir>".
grep '"profile":{[^}]*"test":true' "$work/build.json" | grep '"executable":"/' | while read -r line; do
  exe=$(sed -E 's/.*"executable":"([^"]*)".*/\1/' <<<"$line")
  manifest=$(sed -E 's/.*"manifest_path":"([^"]*)".*/\1/' <<<"$line")
  name=$(sed -E 's/.*"target":\{[^}]*"name":"([^"]*)".*/\1/' <<<"$line")
  kind=$(sed -E 's/.*"target":\{"kind":\["([^"]*)".*/\1/' <<<"$line")
  package=$(dirname "$manifest")
  # Unit tests of the library and of binaries share their target's name.
  [ "$kind" = test ] || name="$(basename "$package"):$kind:$name"
  echo "$name $exe $package"
done >"$work/binaries"
# Doc tests have no binary of their own; cargo runs them.
echo "doc-tests - $PWD" >>"$work/binaries"

# Longest first; a binary not seen before counts as longest.
while read -r name exe package; do
  seconds=$(awk -v n="$name" '$1 == n {print $2}' "$times" | tail -n 1)
  echo "${seconds:-999999} $name $exe $package"
done <"$work/binaries" | sort -rn -k1,1 | cut -d' ' -f2- >"$work/queue"

run_one() {
  local name=$1 exe=$2 package=$3 started status=0 log
  log="$work/$(tr '/:' '__' <<<"$name").log"
  started=$(date +%s)
  if [ "$exe" = - ]; then
    "$cargo" test --workspace --doc >"$log" 2>&1 || status=$?
  else
    (cd "$package" && "$exe") >"$log" 2>&1 || status=$?
  fi
  local seconds=$(($(date +%s) - started))
  {
    flock 9
    if [ "$status" = 0 ]; then
      printf '\n== %s: ok (%ss)\n' "$name" "$seconds"
    else
      printf '\n== %s: FAILED, exit %s (%ss)\n' "$name" "$status" "$seconds"
      echo "$name" >>"$work/failed"
    fi
    cat "$log"
    echo "$name $seconds" >>"$work/times"
  } 9>"$work/print.lock"
}
export -f run_one
export work cargo

xargs -P "$lanes" -L 1 bash -c 'run_one "$@"' _ <"$work/queue" || true

cp "$work/times" "$times" 2>/dev/null || true
count=$(wc -l <"$work/queue")
if [ -s "$work/failed" ]; then
  printf '\n%s of %s test binaries failed:\n' "$(wc -l <"$work/failed")" "$count"
  sed 's/^/  /' "$work/failed"
  exit 1
fi
printf '\nall %s test binaries passed\n' "$count"
