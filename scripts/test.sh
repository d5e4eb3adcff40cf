#!/usr/bin/env bash
# The whole test suite: format and type checks, the bridge's Go vet and unit
# tests, then the TypeScript unit and integration tests in one node:test run
# (one summary). Integration tests build real local tailnets in network
# namespaces, so they need root; files run one at a time so that two labs
# do not compete for two cores. The fault suite is separate
# (`npm run test:faults`): see README, Reliability, for why it is not here.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export PATH="$root/node_modules/.bin:$PATH"
echo "test: format (prettier --check; fix with: npx prettier --write .)"
prettier --check --log-level warn .
echo "test: type check"
tsc --noEmit -p .
if [ $# -gt 0 ]; then
  exec node --test --test-concurrency=2 "$@"
fi
echo "test: bridge (go vet, go test)"
(cd dataplane && unformatted=$(gofmt -l .) && { [ -z "$unformatted" ] || { echo "gofmt needed: $unformatted" >&2; exit 1; }; } \
  && go vet ./... && go test ./...)
exec node --test --test-concurrency=1 'test/unit/**/*.test.ts' 'test/integration/**/*.test.ts'
