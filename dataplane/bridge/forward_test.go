package bridge

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
)

// Every test here uses loopback TCP or net.Pipe only.

func listenLoopback(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// tcpPair returns both ends of one loopback TCP connection.
func tcpPair(t *testing.T) (dialed, accepted *net.TCPConn) {
	t.Helper()
	ln := listenLoopback(t)
	acc := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		acc <- c
	}()
	d, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	a := <-acc
	if a == nil {
		t.Fatal("accept failed")
	}
	for _, c := range []net.Conn{d, a} {
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		t.Cleanup(func() { c.Close() })
	}
	return d.(*net.TCPConn), a.(*net.TCPConn)
}

func discardLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestPumpHalfCloses(t *testing.T) {
	client, a := tcpPair(t)
	b, server := tcpPair(t)
	pumped := make(chan struct{})
	go func() { Pump(a, b); close(pumped) }()

	// The client says its piece and shuts its write side, as `nc -N` does.
	if _, err := client.Write([]byte("request")); err != nil {
		t.Fatal(err)
	}
	if err := client.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(server)
	if err != nil || string(got) != "request" {
		t.Fatalf("server read %q, %v; want request then EOF", got, err)
	}
	// The other direction still flows after the half-close.
	if _, err := server.Write([]byte("response")); err != nil {
		t.Fatalf("server write after client's half-close: %v", err)
	}
	if err := server.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got, err = io.ReadAll(client)
	if err != nil || string(got) != "response" {
		t.Fatalf("client read %q, %v; want response then EOF", got, err)
	}
	select {
	case <-pumped:
	case <-time.After(5 * time.Second):
		t.Fatal("Pump did not return after both sides finished")
	}
}

// startForwarder serves f on a loopback listener and returns its address.
func startForwarder(t *testing.T, f *Forwarder) string {
	t.Helper()
	f.Listener = listenLoopback(t)
	f.Log = discardLog()
	go f.Serve()
	t.Cleanup(f.Close)
	return f.Addr()
}

func dialUpstream(addr string) func(context.Context, net.Conn) (net.Conn, error) {
	return func(ctx context.Context, _ net.Conn) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	t.Cleanup(func() { c.Close() })
	return c
}

func TestForwarderRefusesWhenAdmitSaysNo(t *testing.T) {
	var dialed atomic.Bool
	asked := make(chan netip.AddrPort, 1)
	addr := startForwarder(t, &Forwarder{
		Name: "guarded",
		Admit: func(_ context.Context, remote netip.AddrPort) (bool, string, string) {
			asked <- remote
			return false, "mallory", "carries no allowed tag"
		},
		Dial: func(context.Context, net.Conn) (net.Conn, error) {
			dialed.Store(true)
			return nil, errors.New("must not dial")
		},
	})
	c := dial(t, addr)
	if got, err := io.ReadAll(c); err != nil || len(got) != 0 {
		t.Errorf("refused caller read %q, %v; want a plain close", got, err)
	}
	if remote := <-asked; remote.String() != c.LocalAddr().String() {
		t.Errorf("Admit asked about %v, want the caller %v", remote, c.LocalAddr())
	}
	if dialed.Load() {
		t.Error("upstream dialed for a refused caller")
	}
}

func TestForwarderHooks(t *testing.T) {
	upLn := listenLoopback(t)
	addr := startForwarder(t, &Forwarder{
		Name:        "hooks",
		Dial:        dialUpstream(upLn.Addr().String()),
		ProxyHeader: true,
		// Pre replaces the caller's first line before anything is dialed.
		Pre: func(c net.Conn) (net.Conn, []byte, error) {
			r := bufio.NewReader(c)
			if _, err := readLine(r); err != nil {
				return nil, nil, err
			}
			return &bufConn{c, r}, []byte("REWRITTEN\r\n"), nil
		},
		// Post talks to the caller once the upstream leg exists.
		Post: func(c, up net.Conn) (net.Conn, net.Conn, error) {
			_, err := c.Write([]byte("HELLO FROM POST\r\n"))
			return c, up, err
		},
	})
	c := dial(t, addr)
	if _, err := c.Write([]byte("ORIGINAL\r\npayload")); err != nil {
		t.Fatal(err)
	}
	up, err := upLn.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	_ = up.SetDeadline(time.Now().Add(10 * time.Second))
	ur := bufio.NewReader(up)

	// PROXY v2 header first, naming the caller, then Pre's line, then the
	// caller's own bytes after its first line.
	h, err := proxyproto.Read(ur)
	if err != nil {
		t.Fatalf("PROXY header: %v", err)
	}
	if h.Version != 2 || h.SourceAddr.String() != c.LocalAddr().String() {
		t.Errorf("PROXY header v%d from %v, want v2 from %v", h.Version, h.SourceAddr, c.LocalAddr())
	}
	want := "REWRITTEN\r\npayload"
	got := make([]byte, len(want))
	if _, err := io.ReadFull(ur, got); err != nil || string(got) != want {
		t.Fatalf("upstream read %q, %v; want %q", got, err, want)
	}
	if _, err := up.Write([]byte("answer")); err != nil {
		t.Fatal(err)
	}
	_ = up.(*net.TCPConn).CloseWrite()
	if got, err := io.ReadAll(c); err != nil || string(got) != "HELLO FROM POST\r\nanswer" {
		t.Errorf("caller read %q, %v; want Post's line then the answer", got, err)
	}
}

func TestForwarderHookRefusals(t *testing.T) {
	refuse := errors.New("refused")
	tests := []struct {
		name       string
		pre        func(net.Conn) (net.Conn, []byte, error)
		post       func(c, up net.Conn) (net.Conn, net.Conn, error)
		wantDialed bool
	}{
		{"Pre refuses before the dial", func(net.Conn) (net.Conn, []byte, error) { return nil, nil, refuse }, nil, false},
		{"Post refuses after the dial", nil, func(c, up net.Conn) (net.Conn, net.Conn, error) { return nil, nil, refuse }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			upLn := listenLoopback(t)
			var dialed atomic.Bool
			addr := startForwarder(t, &Forwarder{
				Name: "refusing",
				Dial: func(ctx context.Context, c net.Conn) (net.Conn, error) {
					dialed.Store(true)
					return dialUpstream(upLn.Addr().String())(ctx, c)
				},
				Pre:  tt.pre,
				Post: tt.post,
			})
			c := dial(t, addr)
			_, _ = c.Write([]byte("CONNECT {}\r\n"))
			if got, _ := io.ReadAll(c); len(got) != 0 {
				t.Errorf("refused caller read %q", got)
			}
			if dialed.Load() != tt.wantDialed {
				t.Errorf("dialed = %v, want %v", dialed.Load(), tt.wantDialed)
			}
			if tt.wantDialed {
				up, err := upLn.Accept()
				if err != nil {
					t.Fatal(err)
				}
				_ = up.SetDeadline(time.Now().Add(10 * time.Second))
				if got, _ := io.ReadAll(up); len(got) != 0 {
					t.Errorf("upstream of a refused caller read %q", got)
				}
				up.Close()
			}
		})
	}
}

func TestForwarderCloseCutsConnections(t *testing.T) {
	upLn := listenLoopback(t)
	f := &Forwarder{Name: "cut", Dial: dialUpstream(upLn.Addr().String())}
	addr := startForwarder(t, f)
	c := dial(t, addr)
	up, err := upLn.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	_ = up.SetDeadline(time.Now().Add(10 * time.Second))
	// A round trip proves the connection is pumped before we cut it.
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(up, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if _, err := io.ReadAll(c); err != nil && !errors.Is(err, net.ErrClosed) && !strings.Contains(err.Error(), "reset") {
		t.Errorf("caller after Close: %v", err)
	}
	if _, err := net.Dial("tcp", addr); err == nil {
		t.Error("listener still accepts after Close")
	}
}

func TestDialFirst(t *testing.T) {
	live := listenLoopback(t)
	go func() {
		for {
			c, err := live.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	// A port nobody listens on: bind one, then let it go.
	deadLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := deadLn.Addr().String()
	deadLn.Close()

	var tried []string
	dialer := func(ctx context.Context, network, addr string) (net.Conn, error) {
		tried = append(tried, addr)
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
	ctx := context.Background()

	c, err := DialFirst(ctx, dialer, []string{dead, live.Addr().String()})
	if err != nil {
		t.Fatalf("DialFirst did not fall back to the second target: %v", err)
	}
	c.Close()
	if len(tried) != 2 || tried[0] != dead {
		t.Errorf("tried %q, want the dead target then the live one", tried)
	}

	tried = nil
	c, err = DialFirst(ctx, dialer, []string{live.Addr().String(), dead})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if len(tried) != 1 {
		t.Errorf("tried %q after the first target answered, want one dial", tried)
	}

	if _, err := DialFirst(ctx, dialer, []string{dead, dead}); err == nil || strings.Count(err.Error(), dead) != 2 {
		t.Errorf("all targets dead: err = %v, want both failures joined", err)
	}
	if _, err := DialFirst(ctx, dialer, nil); err == nil {
		t.Error("no targets: want an error")
	}
}
