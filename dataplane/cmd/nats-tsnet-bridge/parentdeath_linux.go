package main

import (
	"fmt"
	"os"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// With parentPIDEnv set, the bridge (and the nats-server that `confine`
// becomes) must not outlive the node that started it, even when the node is
// SIGKILLed: the kernel sends SIGTERM when the parent dies. This is what
// setpriv(1) did for the node before; doing it here means a host needs
// nothing besides the release file.

// init runs on the main thread, and the parent-death signal belongs to the
// thread that asks for it: the main thread lives as long as the process.
func init() { dieWithParent() }

// dieWithParent asks for SIGTERM when the parent dies, then checks that the
// parent is still the one that started us: had it died before the request,
// no signal would ever come.
func dieWithParent() {
	want := os.Getenv(parentPIDEnv)
	if want == "" {
		return
	}
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(syscall.SIGTERM), 0, 0, 0); err != nil {
		fmt.Fprintf(os.Stderr, "cannot ask for a signal when the node dies: %v\n", err)
		return
	}
	if strconv.Itoa(os.Getppid()) != want {
		fmt.Fprintf(os.Stderr, "the node that started the bridge (pid %s) is gone\n", want)
		os.Exit(1)
	}
}
