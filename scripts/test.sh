#!/usr/bin/env bash
# The whole test suite: type check, then unit and integration tests in one
# node:test run (one summary). Integration tests build real local tailnets
# in network namespaces, so they need root; files run one at a time so that
# two labs do not compete for two cores. The fault suite is separate
# (`npm run test:faults`): see README, Reliability, for why it is not here.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export PATH="$root/node_modules/.bin:$PATH"
echo "test: type check"
tsc --noEmit -p .
if [ $# -gt 0 ]; then
  exec node --test --test-concurrency=2 "$@"
fi
exec node --test --test-concurrency=1 'test/unit/**/*.test.ts' 'test/integration/**/*.test.ts'
