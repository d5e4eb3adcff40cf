#!/usr/bin/env bash
# Installs what nats-tsnet needs on a fresh machine and builds it. Safe to
# run again: every step checks first and skips work that is already done.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
t0=$SECONDS

# Debian packages: ip/ss (iproute2) for the local tailnet's namespaces,
# setpriv (util-linux) so children die with their parent.
need=()
command -v ip >/dev/null || need+=(iproute2)
command -v ss >/dev/null || need+=(iproute2)
command -v setpriv >/dev/null || need+=(util-linux)
# podman builds and runs the container image and boots systemd for the unit
# (test/integration/container.test.ts, systemd.test.ts);
# runc because crun refuses a cgroup v1 host whose cgroup2 tree has controllers.
command -v podman >/dev/null || need+=(podman)
command -v runc >/dev/null || need+=(runc)
# The fault suite: nft cuts one direction of a host's traffic, fallocate
# (util-linux) fills a disk.
command -v nft >/dev/null || need+=(nftables)
command -v fallocate >/dev/null || need+=(util-linux)
# A real browser for the WebSocket face (test/integration/websocket.test.ts).
command -v chromium >/dev/null || need+=(chromium)
# `setup.sh --release` (npm run release): the arm64 file's self-check runs it
# under qemu-user-static, with Debian's cross C library as its root.
if [ "${1:-}" = --release ]; then
  [ -x /usr/bin/qemu-aarch64-static ] || need+=(qemu-user-static)
  [ -e /usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1 ] || need+=(libc6-arm64-cross)
  [ -e /usr/aarch64-linux-gnu/lib/libstdc++.so.6 ] || need+=(libstdc++6-arm64-cross)
fi
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}"
  if [ "$(id -u)" -ne 0 ]; then echo "setup: need root to install ${need[*]}" >&2; exit 7; fi
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

# Go builds the data plane and the pinned upstream programs.
if ! command -v go >/dev/null; then
  echo "setup: Go is required (>= 1.26.5) to build the bridge, nats-server and headscale" >&2
  exit 7
fi

# Node 24 comes from the npm 'node' package pinned in package.json, so the
# machine's own Node version does not matter. Reinstall only when the lock
# file changed since the last install.
stamp=node_modules/.nats-tsnet-lock
want=$(sha256sum package-lock.json | cut -c1-16)
if [ ! -x node_modules/.bin/node ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: npm ci"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$want" > "$stamp"
fi
echo "setup: node $(node_modules/.bin/node --version)"

bash scripts/build.sh
echo "setup: done in $((SECONDS - t0))s"
