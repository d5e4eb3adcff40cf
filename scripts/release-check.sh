#!/usr/bin/env bash
# npm run release:check: are release builds reproducible? Builds the
# committed HEAD twice, from two fresh clones at different paths, and
# compares every file in dist/ byte for byte (SHA256SUMS). Exit 1 and a list
# of the files that differ if they are not identical.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/nats-tsnet-release-check.XXXXXX)
rev=$(git -C "$root" rev-parse HEAD) # both builds of this one commit, whatever lands meanwhile
for i in 1 2; do
  git clone -q "$root" "$work/build-$i" && git -C "$work/build-$i" checkout -q "$rev"
  (cd "$work/build-$i" && echo "release-check: build $i in $work/build-$i" \
    && npm ci --no-audit --no-fund --loglevel=error >/dev/null \
    && node_modules/.bin/node scripts/release.ts "$@" 2>&1 | sed "s/^/  [$i] /")
done
if diff -u "$work/build-1/dist/SHA256SUMS" "$work/build-2/dist/SHA256SUMS"; then
  echo "release-check: identical"
  cat "$work/build-1/dist/SHA256SUMS"
  rm -rf "$work"
else
  # Which stage first differs: the Go binaries (manifest), the bundle, the blob.
  for f in manifest-amd64.json manifest-arm64.json nats-tsnet.cjs sea-amd64.blob sea-arm64.blob; do
    cmp -s "$work/build-1/.cache/release/$f" "$work/build-2/.cache/release/$f" || echo "release-check: differs: .cache/release/$f" >&2
  done
  echo "release-check: the builds differ (above); both builds are kept in $work" >&2
  exit 1
fi
