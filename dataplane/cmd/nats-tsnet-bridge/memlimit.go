package main

import (
	"os"
	"runtime/debug"
)

// defaultMemoryLimit is the bridge's soft memory limit.
// Under large payloads the netstack and the relays make garbage faster than
// the GC's default pacing returns it: 1 MiB messages for 20 s took a node's
// bridge from 27 to 412 MiB, and it stayed at 393 MiB afterwards. With a
// soft limit the GC keeps up (82 MiB peak, 43 MiB after, the same traffic);
// it is soft, so a bridge that truly needs more is slowed by GC, not
// killed. GOMEMLIMIT in the environment overrides it, as for any Go program.
const defaultMemoryLimit = 128 << 20

// applyMemoryLimit sets the default limit unless GOMEMLIMIT is set, and
// says which one holds.
func applyMemoryLimit() string {
	if v := os.Getenv("GOMEMLIMIT"); v != "" {
		return v
	}
	debug.SetMemoryLimit(defaultMemoryLimit)
	return "128MiB"
}
