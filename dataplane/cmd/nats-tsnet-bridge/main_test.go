package main

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
)

// rawFD hands over a descriptor that no *os.File owns, as a parent process
// would: localListener takes it over and closes it, and no finalizer of ours
// may close the same number again later.
func rawFD(t *testing.T, f *os.File) string {
	t.Helper()
	fd, err := syscall.Dup(int(f.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	return "fd:" + strconv.Itoa(fd)
}

func listenerFD(t *testing.T, network, addr string) string {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	f, err := ln.(interface{ File() (*os.File, error) }).File()
	if err != nil {
		t.Fatal(err)
	}
	return rawFD(t, f)
}

func TestLocalListener(t *testing.T) {
	plain, err := os.Create(filepath.Join(t.TempDir(), "not-a-socket"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		spec func(t *testing.T) string
		ok   bool
	}{
		{"loopback address", func(*testing.T) string { return "127.0.0.1:0" }, true},
		{"wildcard address", func(*testing.T) string { return "0.0.0.0:0" }, false},
		{"name", func(*testing.T) string { return "localhost:0" }, false},
		{"inherited loopback socket", func(t *testing.T) string { return listenerFD(t, "tcp", "127.0.0.1:0") }, true},
		// Binding the wildcard sends nothing anywhere; it is what a careless
		// parent might hand over, and must be refused.
		{"inherited wildcard socket", func(t *testing.T) string { return listenerFD(t, "tcp", "0.0.0.0:0") }, false},
		{"inherited unix socket", func(t *testing.T) string {
			return listenerFD(t, "unix", filepath.Join(t.TempDir(), "s"))
		}, false},
		{"inherited regular file", func(t *testing.T) string { return rawFD(t, plain) }, false},
		{"fd of the control protocol", func(*testing.T) string { return "fd:1" }, false},
		{"negative fd", func(*testing.T) string { return "fd:-1" }, false},
		{"fd not a number", func(*testing.T) string { return "fd:x" }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := tt.spec(t)
			ln, err := localListener(spec)
			if ln != nil {
				defer ln.Close()
			}
			if tt.ok != (err == nil) {
				t.Fatalf("localListener(%s) = %v, %v; want ok=%v", spec, ln, err, tt.ok)
			}
		})
	}
}
