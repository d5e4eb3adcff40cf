package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
)

// controller answers the control socket: one command a line, one JSON
// object a line back.
type controller struct {
	lfs     *lazyFS
	cut     chan struct{} // closed once a power cut has been answered: time to go
	cutOnce sync.Once
}

func newController(l *lazyFS) *controller {
	return &controller{lfs: l, cut: make(chan struct{})}
}

type errorAnswer struct {
	Error string `json:"error"`
}

type syncAnswer struct {
	FlushedBytes int64 `json:"flushed_bytes"`
}

// answer runs one command.
func (c *controller) answer(cmd string) any {
	switch cmd {
	case "stats":
		return c.lfs.stats()
	case "sync":
		if !c.lfs.enter() {
			return errorAnswer{"powered off"}
		}
		defer c.lfs.leave()
		n, err := c.lfs.syncAll()
		if err != nil {
			return errorAnswer{err.Error()}
		}
		return syncAnswer{n}
	case "powercut":
		r, ok := c.lfs.powerCut()
		if !ok {
			return errorAnswer{"powered off already"}
		}
		return r
	default:
		return errorAnswer{fmt.Sprintf("unknown command %q (known: stats, sync, powercut)", cmd)}
	}
}

// serve answers connections on ln until ln is closed.
func (c *controller) serve(ln net.Listener) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		go c.serveConn(conn)
	}
}

// serveConn answers the commands on one connection, until it ends or sends
// a line longer than any command.
func (c *controller) serveConn(conn net.Conn) {
	defer conn.Close()
	lines := bufio.NewScanner(conn)
	lines.Buffer(make([]byte, 256), 256)
	enc := json.NewEncoder(conn) // one object a line
	for lines.Scan() {
		cmd := strings.TrimSpace(lines.Text())
		if err := enc.Encode(c.answer(cmd)); err != nil {
			return
		}
		if cmd == "powercut" {
			c.cutOnce.Do(func() { close(c.cut) })
		}
	}
	if errors.Is(lines.Err(), bufio.ErrTooLong) {
		enc.Encode(errorAnswer{"command too long"})
	}
}

// listenControl listens on a Unix socket at path, replacing the socket a
// previous run (ended by a power cut) left there.
func listenControl(path string) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
		os.Remove(path)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	return ln, nil
}
