#!/usr/bin/env bash
# The whole test suite: format and type checks, the bridge's Go vet and unit
# tests, then the TypeScript unit and integration tests in one node:test run
# (one summary). Integration tests build real local tailnets in network
# namespaces, so they need root; files run one at a time so that two labs
# do not compete for two cores. The fault suite runs here in its short form
# (every scenario once, a 20 s soak: FAULT_SHORT=1); its long form, with the
# partition twenty times and a 600 s soak, is `npm run test:faults`.
set -euo pipefail
export FAULT_SHORT=${FAULT_SHORT:-1}
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
echo "test: lazyfs (go vet, go test; its FUSE tests skip unless root)"
(cd localtailnet/lazyfs && unformatted=$(gofmt -l .) && { [ -z "$unformatted" ] || { echo "gofmt needed: $unformatted" >&2; exit 1; }; } \
  && go vet ./... && go test ./...)
# --test-force-exit: once every test has reported, a handle some client
# library left open must not keep the run (and CI) waiting.
exec node --test --test-force-exit --test-concurrency=1 'test/unit/**/*.test.ts' 'test/integration/**/*.test.ts' 'test/faults/**/*.test.ts'
