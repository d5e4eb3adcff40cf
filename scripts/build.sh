#!/usr/bin/env bash
# Builds the Go executables into .cache/bin, each under a name that carries a
# hash of everything that goes into it (pins, sources, Go version), so a
# second run with nothing changed builds nothing, and a changed pin or source
# can never be served a stale binary. Nothing here depends on the cache
# existing: a fresh clone builds everything.
#
# The builds are reproducible (-trimpath, no VCS stamp, empty build id), so
# the release script reuses them. For another architecture (the release's
# arm64 file): BUILD_GOARCH=arm64 builds into .cache/bin-linux-arm64, and
# BUILD_ONLY="nats-tsnet-bridge nats-server" limits what is built.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
export GOFLAGS=-mod=readonly GOOS=linux
goarch=${BUILD_GOARCH:-$(go env GOHOSTARCH)}
export GOARCH=$goarch
bin="$root/.cache/bin"
[ "$goarch" = "$(go env GOHOSTARCH)" ] || bin="$root/.cache/bin-linux-$goarch"
mkdir -p "$bin"
only=${BUILD_ONLY:-}
gover=$(go env GOVERSION)
ldflags="-s -w -buildid="

hash_of() { # files... -> short hash of their contents plus the Go version, target and flags
  { echo "$gover $goarch $ldflags"; cat "$@"; } | sha256sum | cut -c1-16
}

# build NAME DIR PKG HASH [TAGS]: builds PKG in module DIR (with Go build
# tags TAGS) to .cache/bin/NAME-HASH and points .cache/bin/NAME at it.
build() {
  local name=$1 dir=$2 pkg=$3 h=$4 tags=${5:-} out="$bin/$1-$4"
  if [ -n "$only" ] && [[ " $only " != *" $name "* ]]; then return 0; fi
  if [ -x "$out" ]; then
    echo "build: $name up to date ($h)"
  else
    local t0=$SECONDS
    echo "build: $name ($h) ..."
    (cd "$dir" && CGO_ENABLED=0 go build -trimpath -buildvcs=false -tags "$tags" -ldflags="$ldflags" -o "$out.tmp" "$pkg")
    mv "$out.tmp" "$out"
    echo "build: $name done in $((SECONDS - t0))s"
    # Keep only the newest build of each name.
    # (exactly NAME-<16 hex>: "nats" must not match "nats-server-...")
    find "$bin" -maxdepth 1 -regextype posix-extended -regex ".*/$name-[0-9a-f]{16}" ! -name "$name-$h" -delete
  fi
  ln -sfn "$name-$h" "$bin/$name"
}

dp="$root/dataplane"
# ts_omit_peerapiserver: tsnet's peerAPI answers every tailnet peer, whatever
# the ACL says, and no tsnet option turns it off; the bridge needs none of it.
bridge_tags=ts_omit_peerapiserver
build nats-tsnet-bridge "$dp" ./cmd/nats-tsnet-bridge \
  "$(echo "$bridge_tags" | hash_of - "$dp/go.mod" "$dp/go.sum" $(find "$dp" -name '*.go' | sort))" "$bridge_tags"
# lazyfs is test tooling (the fault suite's power-cut filesystem), not shipped.
lz="$root/localtailnet/lazyfs"
build lazyfs "$lz" . "$(hash_of "$lz/go.mod" "$lz/go.sum" $(find "$lz" -name '*.go' | sort))"
# natscli is the load generator of the benchmarks (`nats bench`); nsc makes
# operator stores in the tests the way NATS users make them.
for tool in nats-server headscale natscli nsc; do
  d="$root/upstream/$tool"
  pkg=$(awk '/^tool /{print $2}' "$d/go.mod")
  name=$tool
  [ "$tool" = natscli ] && name=nats
  build "$name" "$d" "$pkg" "$(hash_of "$d/go.mod" "$d/go.sum")"
done
