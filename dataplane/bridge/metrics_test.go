package bridge

import (
	"context"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"tailscale.com/ipn/ipnstate"
)

// A forwarder counts what reaches upstream, with its bytes each way, and
// what it refuses, by reason; the refusal log counts the guard's refusals
// under its face whether or not it logs them.
func TestMetricsCountFaces(t *testing.T) {
	up := listenLoopback(t)
	go func() {
		for {
			c, err := up.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(c, c); _ = c.Close() }() // echo
		}
	}()
	m := NewMetrics()
	f := &Forwarder{Name: "client", Listener: listenLoopback(t), Log: discardLog(), Metrics: m,
		Dial: func(ctx context.Context, _ net.Conn) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", up.Addr().String())
		}}
	go f.Serve()
	t.Cleanup(f.Close)
	c, err := net.Dial("tcp", f.Addr())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	_ = c.(*net.TCPConn).CloseWrite()
	if b, _ := io.ReadAll(c); string(b) != "hello" {
		t.Fatalf("echo %q", b)
	}
	_ = c.Close()
	waitFor(t, func() bool {
		return m.Snapshot().Faces["client"].Open == 0 && m.Snapshot().Faces["client"].BytesIn == 5
	})
	got := m.Snapshot().Faces["client"]
	if got.Accepted != 1 || got.BytesOut != 5 {
		t.Fatalf("client face: %+v; want 1 accepted, 5 bytes each way, none open", got)
	}

	// The admit refusal (cluster face) and the refusal log's, logged or suppressed.
	f.Admit = func(context.Context, netip.AddrPort) (bool, string, string) { return false, "x", "no cluster tag" }
	rc, err := net.Dial("tcp", f.Addr())
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.ReadAll(rc)
	rl := newRefusalLog(discardLog(), time.Hour).counting(m, "local:lan")
	for range 3 {
		rl.refused("ip:10.0.0.1", ErrLocalFromHost, "connection refused")
	}
	snap := m.Snapshot()
	if n := snap.Faces["client"].Refused[reasonNotAdmitted]; n != 1 {
		t.Fatalf("not admitted: %d, want 1", n)
	}
	if n := snap.Faces["local:lan"].Refused[ErrLocalFromHost]; n != 3 {
		t.Fatalf("local face refusals: %d, want 3 (one logged, two suppressed, all counted)", n)
	}
}

func TestMetricsWhoIsHistogramIsCumulative(t *testing.T) {
	m := NewMetrics()
	m.WhoIs(200*time.Microsecond, false)
	m.WhoIs(3*time.Second, true)
	h := m.Snapshot().WhoIs
	if h.Count != 2 || h.Errors != 1 || h.Counts[len(h.Bounds)] != 2 {
		t.Fatalf("histogram %+v", h)
	}
	for i, b := range h.Bounds {
		want := uint64(0)
		if b >= 0.0002 {
			want = 1
		}
		if h.Counts[i] != want {
			t.Fatalf("bucket le=%v: %d, want %d", b, h.Counts[i], want)
		}
	}
	var nilM *Metrics
	nilM.Refused("x", "y") // nil-safe: faces built without metrics
}

func TestPathOf(t *testing.T) {
	hs := time.Now()
	for _, c := range []struct {
		p    ipnstate.PeerStatus
		want string
	}{
		{ipnstate.PeerStatus{CurAddr: "10.0.0.2:41641", Relay: "fra", LastHandshake: hs}, "direct"},
		{ipnstate.PeerStatus{PeerRelay: "10.0.0.9:7777:3", Relay: "fra", LastHandshake: hs}, "peer-relay"},
		{ipnstate.PeerStatus{Relay: "fra", LastHandshake: hs}, "derp"},
		{ipnstate.PeerStatus{Relay: "fra"}, "none"},
	} {
		if got := pathOf(&c.p); got != c.want {
			t.Errorf("%+v: %s, want %s", c.p, got, c.want)
		}
	}
}

func TestObserveArgsBounded(t *testing.T) {
	if err := (ObserveArgs{Ping: []string{"100.64.0.1", "fd7a:115c:a1e0::1"}}).Validate(); err != nil {
		t.Fatal(err)
	}
	if codeOf((ObserveArgs{Ping: []string{"nats-2"}}).Validate()) != ErrBadArgs {
		t.Fatal("a name is not an address to ping")
	}
	if codeOf((ObserveArgs{Ping: make([]string, maxPings+1)}).Validate()) != ErrBadArgs {
		t.Fatal("more pings than the bound")
	}
}

func waitFor(t *testing.T, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !ok(); {
		if time.Now().After(deadline) {
			t.Fatal("not reached within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
