#!/usr/bin/env bash
# The whole test suite: type check, then unit, integration and fault tests
# in one node:test run (one summary). Integration and fault tests build real
# local tailnets in network namespaces, so they need root. Files run one at
# a time: the fault suite measures recovery, which a second lab competing
# for two cores would distort. The fault suite's soak is shortened here
# (FAULT_SOAK_SECONDS, 600 in `npm run test:faults`).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export PATH="$root/node_modules/.bin:$PATH"
echo "test: type check"
tsc --noEmit -p .
if [ $# -gt 0 ]; then
  exec node --test --test-concurrency=2 "$@"
fi
export FAULT_SOAK_SECONDS=${FAULT_SOAK_SECONDS:-60}
exec node --test --test-concurrency=1 'test/unit/**/*.test.ts' 'test/integration/**/*.test.ts' 'test/faults/**/*.test.ts'
