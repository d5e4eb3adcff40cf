package main

import (
	"fmt"
	"net/http"
	"net/http/pprof"
	"os"

	"github.com/nats-tsnet/nats-tsnet/dataplane/bridge"
)

// startPprof serves the Go profiler for benchmarks. Loopback only: a
// profile shows what the process does, which is nobody else's business.
func startPprof(addr string) {
	if !bridge.IsLoopbackHostPort(addr) {
		fmt.Fprintf(os.Stderr, "nats-tsnet-bridge: --pprof %s: must be a loopback address\n", addr)
		os.Exit(exitUsage)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	go func() { _ = http.ListenAndServe(addr, mux) }()
}
