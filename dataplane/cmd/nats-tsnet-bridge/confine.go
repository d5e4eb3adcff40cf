package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"github.com/nats-tsnet/nats-tsnet/dataplane/bridge"
)

// parentPIDEnv names the node that started the bridge (parentdeath_linux.go).
const parentPIDEnv = "NATS_TSNET_PARENT_PID"

// runConfine is `nats-tsnet-bridge confine --connect-ports P[,P] -- PROGRAM
// ARGS...`: it confines itself (bridge.ConfineConnect) and becomes PROGRAM,
// which keeps the confinement and the pid. Where the kernel cannot confine,
// PROGRAM runs as it would have without us, and the line says so: the
// bridge's own filtering of routes holds either way.
func runConfine(args []string) {
	fs := flag.NewFlagSet("confine", flag.ExitOnError)
	portsFlag := fs.String("connect-ports", "", "the only TCP ports the program may connect to (comma-separated; empty: none)")
	_ = fs.Parse(args)
	argv := fs.Args()
	if len(argv) == 0 {
		fatalf(exitUsage, bridge.ErrUsage, "confine: no program to run")
	}
	var ports []uint16
	for _, s := range strings.Split(*portsFlag, ",") {
		if s == "" {
			continue
		}
		p, err := strconv.ParseUint(s, 10, 16)
		if err != nil || p == 0 {
			fatalf(exitUsage, bridge.ErrUsage, "confine: bad port %q", s)
		}
		ports = append(ports, uint16(p))
	}
	prog, err := exec.LookPath(argv[0])
	if err != nil {
		fatalf(exitUsage, bridge.ErrUsage, "confine: %v", err)
	}
	if err := bridge.ConfineConnect(ports); err != nil {
		fmt.Fprintf(os.Stderr, "outbound connections not confined (%v); the bridge's route filter still applies\n", err)
	} else {
		fmt.Fprintf(os.Stderr, "outbound connections confined to TCP ports %v\n", ports)
	}
	// The parent-death signal belongs to a thread, and exec keeps only the
	// calling thread's: ask again on the thread that execs.
	runtime.LockOSThread()
	dieWithParent()
	_ = os.Unsetenv(parentPIDEnv)
	err = syscall.Exec(prog, argv, os.Environ())
	fatalf(exitUsage, bridge.ErrUsage, "confine: exec %s: %v", prog, err)
}
