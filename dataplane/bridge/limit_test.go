package bridge

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"tailscale.com/client/tailscale/apitype"
	"tailscale.com/tailcfg"
)

// Every test here uses loopback TCP or net.Pipe only.

// clock is a settable time source for the limiter and the refusal log.
type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }
func newClock() *clock                   { return &clock{t: time.Unix(1_700_000_000, 0)} }
func limiterAt(l DeviceLimits, c *clock) *deviceLimiter {
	d := newDeviceLimiter(l)
	d.now = c.now
	return d
}

func TestDeviceLimitsValidate(t *testing.T) {
	for _, tc := range []struct {
		l  DeviceLimits
		ok bool
	}{
		{DeviceLimits{MaxConns: 256, Rate: 20, Burst: 100}, true},
		{DeviceLimits{}, true}, // no limits at all, said explicitly
		{DeviceLimits{MaxConns: 1}, true},
		{DeviceLimits{Rate: 0.5, Burst: 1}, true},
		{DeviceLimits{Rate: 5}, false}, // a bucket that holds nothing
		{DeviceLimits{MaxConns: -1}, false},
		{DeviceLimits{Rate: -1, Burst: 1}, false},
		{DeviceLimits{Burst: -1}, false},
	} {
		err := tc.l.Validate()
		if (err == nil) != tc.ok {
			t.Errorf("%+v: Validate() = %v, want ok=%v", tc.l, err, tc.ok)
		}
		if err != nil && !isCode(err, ErrBadArgs) {
			t.Errorf("%+v: %v is not %s", tc.l, err, ErrBadArgs)
		}
	}
}

func isCode(err error, code string) bool {
	var ce *CodedError
	return errors.As(err, &ce) && ce.Code == code
}

func TestLimiterHoldsConnectionsPerDevice(t *testing.T) {
	d := limiterAt(DeviceLimits{MaxConns: 2}, newClock())
	r1, kind, _ := d.acquire("a")
	r2, kind2, _ := d.acquire("a")
	if kind != "" || kind2 != "" {
		t.Fatalf("first two refused: %q %q", kind, kind2)
	}
	if _, kind, reason := d.acquire("a"); kind != ErrDeviceConnections || reason == "" {
		t.Fatalf("third: %q %q, want %q with a reason", kind, reason, ErrDeviceConnections)
	}
	if r, kind, _ := d.acquire("b"); kind != "" {
		t.Fatal("another device is held to a's count")
	} else {
		r()
	}
	r1()
	r1() // a second release gives nothing back twice
	if _, kind, _ := d.acquire("a"); kind != "" {
		t.Fatalf("after a release: %q", kind)
	}
	if _, kind, _ := d.acquire("a"); kind != ErrDeviceConnections {
		t.Fatalf("double release freed two slots: %q", kind)
	}
	r2()
}

func TestLimiterRatePerDevice(t *testing.T) {
	c := newClock()
	d := limiterAt(DeviceLimits{Rate: 2, Burst: 3}, c)
	for i := range 3 {
		if _, kind, _ := d.acquire("a"); kind != "" {
			t.Fatalf("burst connection %d refused: %q", i, kind)
		}
	}
	if _, kind, _ := d.acquire("a"); kind != ErrDeviceRate {
		t.Fatalf("past the burst: %q, want %q", kind, ErrDeviceRate)
	}
	if _, kind, _ := d.acquire("b"); kind != "" {
		t.Fatal("device b pays for a's burst")
	}
	c.advance(499 * time.Millisecond)
	if _, kind, _ := d.acquire("a"); kind != ErrDeviceRate {
		t.Fatal("a token before its time")
	}
	c.advance(time.Millisecond) // 500ms at 2/s: one token
	if _, kind, _ := d.acquire("a"); kind != "" {
		t.Fatalf("the earned token: %q", kind)
	}
	if _, kind, _ := d.acquire("a"); kind != ErrDeviceRate {
		t.Fatal("refused attempts must not earn tokens")
	}
	c.advance(time.Hour) // the bucket fills up to the burst, no further
	for range 3 {
		if _, kind, _ := d.acquire("a"); kind != "" {
			t.Fatal("bucket did not refill")
		}
	}
	if _, kind, _ := d.acquire("a"); kind != ErrDeviceRate {
		t.Fatal("bucket grew past its burst")
	}
}

func TestLimiterRefusedForConnectionsKeepsTokens(t *testing.T) {
	d := limiterAt(DeviceLimits{MaxConns: 1, Rate: 1, Burst: 2}, newClock())
	r, _, _ := d.acquire("a")
	for range 5 {
		if _, kind, _ := d.acquire("a"); kind != ErrDeviceConnections {
			t.Fatalf("got %q, want %q", kind, ErrDeviceConnections)
		}
	}
	r()
	if _, kind, _ := d.acquire("a"); kind != "" {
		t.Fatalf("refusals for connections drained the rate: %q", kind)
	}
}

func TestLimiterForgetsIdleDevicesOnly(t *testing.T) {
	c := newClock()
	d := limiterAt(DeviceLimits{MaxConns: 5, Rate: 1, Burst: 2}, c)
	rOpen, _, _ := d.acquire("open")
	rIdle, _, _ := d.acquire("idle")
	rIdle()
	_, _, _ = d.acquire("drained")
	c.advance(sweepEvery)
	d.mu.Lock()
	d.sweep(c.now())
	_, open := d.devs["open"]
	_, idle := d.devs["idle"]
	d.mu.Unlock()
	if !open || idle {
		t.Fatalf("after a sweep: open kept=%v (want true), idle kept=%v (want false)", open, idle)
	}
	rOpen()
	// A device whose bucket is not full yet is kept, or closing its
	// connections would hand it a fresh burst.
	d2 := limiterAt(DeviceLimits{Rate: 0.001, Burst: 2}, c)
	r, _, _ := d2.acquire("x")
	r()
	c.advance(sweepEvery)
	d2.mu.Lock()
	d2.sweep(c.now())
	_, kept := d2.devs["x"]
	d2.mu.Unlock()
	if !kept {
		t.Fatal("a device with a half-empty bucket was forgotten")
	}
}

// records collects what a slog.Logger writes.
type records struct {
	mu    sync.Mutex
	lines []map[string]any
}

func (r *records) Enabled(context.Context, slog.Level) bool { return true }
func (r *records) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *records) WithGroup(string) slog.Handler            { return r }
func (r *records) Handle(_ context.Context, rec slog.Record) error {
	m := map[string]any{"msg": rec.Message}
	rec.Attrs(func(a slog.Attr) bool { m[a.Key] = a.Value.Any(); return true })
	r.mu.Lock()
	r.lines = append(r.lines, m)
	r.mu.Unlock()
	return nil
}

func (r *records) all() []map[string]any {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]map[string]any(nil), r.lines...)
}

func TestRefusalLogIsBounded(t *testing.T) {
	rec := &records{}
	c := newClock()
	l := newRefusalLog(slog.New(rec), 10*time.Second)
	l.now = c.now
	for range 100 {
		l.refused("node:flood", ErrDeviceRate, "connection refused", "who", "flood")
	}
	l.refused("node:flood", ErrDeviceConnections, "connection refused", "who", "flood")
	l.refused("node:other", ErrDeviceRate, "connection refused", "who", "other")
	if got := len(rec.all()); got != 3 {
		t.Fatalf("%d lines for 102 refusals of 3 (caller, kind) pairs, want 3", got)
	}
	c.advance(10 * time.Second)
	l.refused("node:flood", ErrDeviceRate, "connection refused", "who", "flood")
	lines := rec.all()
	last := lines[len(lines)-1]
	if last["code"] != ErrDeviceRate || fmt.Sprint(last["suppressed"]) != "99" {
		t.Fatalf("the next line: %v, want refusal %q and suppressed 99", last, ErrDeviceRate)
	}
}

func TestRefusalLogTableIsBounded(t *testing.T) {
	rec := &records{}
	l := newRefusalLog(slog.New(rec), time.Hour)
	for i := range maxRefusalKeys + 100 {
		l.refused(fmt.Sprint("ip:", i), ErrDeviceRate, "connection refused")
	}
	if n := len(l.seen); n > maxRefusalKeys {
		t.Fatalf("table holds %d keys, bound %d", n, maxRefusalKeys)
	}
	if n := len(rec.all()); n > maxRefusalKeys {
		t.Fatalf("%d lines, bound %d", n, maxRefusalKeys)
	}
}

const testCap = "nats-tsnet.dev/cap/nats"

func TestGrantGateMirrorsPolicy(t *testing.T) {
	g := GrantGate{Capability: testCap, Users: []string{"rule-user@example.com"}, Tags: []string{"tag:billing"}}
	granted := tailcfg.PeerCapMap{testCap: {`{"pub":{"allow":[">"]}}`}}
	other := tailcfg.PeerCapMap{"example.com/cap/other": {`{}`}}
	for _, tc := range []struct {
		name  string
		tags  []string
		login string
		caps  tailcfg.PeerCapMap
		want  bool
	}{
		{"a grant of the capability", nil, "alice@example.com", granted, true},
		{"a grant for a tagged device", []string{"tag:svc"}, "tagger@example.com", granted, true},
		{"a rule names the login", nil, "rule-user@example.com", nil, true},
		{"a rule names a tag", []string{"tag:x", "tag:billing"}, "", nil, true},
		{"nothing", nil, "carol@example.com", nil, false},
		{"another capability only", nil, "carol@example.com", other, false},
		{"an empty list of the capability", nil, "carol@example.com", tailcfg.PeerCapMap{testCap: {}}, false},
		// A tagged device is its tags, not the person who tagged it.
		{"tagged, owner named by a rule", []string{"tag:svc"}, "rule-user@example.com", nil, false},
		{"no login, no tags", nil, "", nil, false},
	} {
		if got := g.admits(tc.tags, tc.login, tc.caps); got != tc.want {
			t.Errorf("%s: admits = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestListenGuardNeedsTheClientFace(t *testing.T) {
	base := ListenArgs{Name: "client", Port: 4222, Target: "127.0.0.1:14222", SignClients: true}
	lim := &DeviceLimits{MaxConns: 1, Rate: 1, Burst: 1}
	gate := &GrantGate{Capability: testCap}
	for _, tc := range []struct {
		name string
		edit func(*ListenArgs)
		ok   bool
	}{
		{"limits and gate", func(a *ListenArgs) { a.Limits, a.GrantGate = lim, gate }, true},
		{"limits without signClients", func(a *ListenArgs) { a.SignClients, a.Limits = false, lim }, false},
		{"gate without signClients", func(a *ListenArgs) { a.SignClients, a.GrantGate = false, gate }, false},
		{"bad limits", func(a *ListenArgs) { a.Limits = &DeviceLimits{Rate: 1} }, false},
		{"gate without capability", func(a *ListenArgs) { a.GrantGate = &GrantGate{} }, false},
	} {
		a := base
		tc.edit(&a)
		if err := a.Validate(); (err == nil) != tc.ok {
			t.Errorf("%s: Validate() = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

// fakeDevice is one fake tailnet device for the guard's WhoIs.
type fakeDevice struct {
	id, name, login string
	tags            []string
	caps            tailcfg.PeerCapMap
}

// fakeWhois answers by the caller's loopback address (127.0.0.N).
func fakeWhois(byIP map[string]fakeDevice) func(context.Context, string) (*apitype.WhoIsResponse, error) {
	return func(_ context.Context, addr string) (*apitype.WhoIsResponse, error) {
		host, _, _ := net.SplitHostPort(addr)
		d, ok := byIP[host]
		if !ok {
			return nil, errors.New("no such peer")
		}
		return &apitype.WhoIsResponse{
			Node:        &tailcfg.Node{StableID: tailcfg.StableNodeID(d.id), Name: d.name + ".tailnet.internal.", Tags: d.tags},
			UserProfile: &tailcfg.UserProfile{LoginName: d.login},
			CapMap:      d.caps,
		}, nil
	}
}

// fakeNatsServer greets every connection with an INFO carrying a nonce and
// answers a CONNECT with PONG; it counts the CONNECTs per client name.
type fakeNatsServer struct {
	addr     string
	accepted atomic.Int64
	mu       sync.Mutex
	connects map[string]int
}

func startFakeNats(t *testing.T) *fakeNatsServer {
	ln := listenLoopback(t)
	s := &fakeNatsServer{addr: ln.Addr().String(), connects: map[string]int{}}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.accepted.Add(1)
			go s.serve(c)
		}
	}()
	return s
}

func (s *fakeNatsServer) serve(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	_, _ = c.Write([]byte(`INFO {"server_id":"fake","nonce":"bm9uY2U"}` + "\r\n"))
	line, err := readLine(bufio.NewReader(c))
	if err != nil || !isConnect(line) {
		return
	}
	name := "?"
	if i := strings.Index(string(line), `"name":"`); i >= 0 {
		name, _, _ = strings.Cut(string(line)[i+len(`"name":"`):], `"`)
	}
	s.mu.Lock()
	s.connects[name]++
	s.mu.Unlock()
	_, _ = c.Write([]byte("PONG\r\n"))
	_, _ = io.Copy(io.Discard, c)
}

func (s *fakeNatsServer) connectsOf(prefix string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for name, k := range s.connects {
		if strings.HasPrefix(name, prefix) {
			n += k
		}
	}
	return n
}

// guardedFace is a client face in front of a fake nats-server, with the
// guard's log kept for assertions.
func guardedFace(t *testing.T, a ListenArgs, devices map[string]fakeDevice) (addr string, up *fakeNatsServer, rec *records) {
	t.Helper()
	up = startFakeNats(t)
	signer, err := NewSigner()
	if err != nil {
		t.Fatal(err)
	}
	rec = &records{}
	n := &Node{Log: slog.New(rec), signer: signer}
	f := &Forwarder{Name: a.Name, Dial: dialUpstream(up.addr)}
	label := func(string) string { return "" }
	f.Post = func(c, up net.Conn) (net.Conn, net.Conn, error) {
		return n.signer.signClient(c, up, &clientFace{denials: &n.Denials, label: label})
	}
	n.guardClientsWith(f, a, fakeWhois(devices), &clientFace{denials: &n.Denials})
	return startForwarder(t, f), up, rec
}

// dialFrom connects to addr from the loopback address ip (one per fake device).
func dialFrom(t *testing.T, ip, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(15 * time.Second))
	return c
}

// natsHello plays a client: reads the first line, and after an INFO sends
// CONNECT and PING and returns the next line too.
func natsHello(c net.Conn, name string) (first, second string) {
	r := bufio.NewReader(c)
	l, err := r.ReadString('\n')
	if err != nil || !strings.HasPrefix(l, "INFO ") {
		return l, ""
	}
	_, _ = fmt.Fprintf(c, "CONNECT {\"name\":%q}\r\nPING\r\n", name)
	l2, _ := r.ReadString('\n')
	return l, l2
}

var (
	flooder = fakeDevice{id: "nFLOOD", name: "carol-laptop", login: "carol@example.com"} // no grant
	granted = fakeDevice{id: "nBOB", name: "bob-laptop", login: "bob@example.com", caps: tailcfg.PeerCapMap{testCap: {`{}`}}}
)

func TestGateRefusesUngrantedBeforeNatsServerIsAsked(t *testing.T) {
	a := ListenArgs{Name: "client", Port: 4222, Target: "127.0.0.1:1", SignClients: true, GrantGate: &GrantGate{Capability: testCap}}
	addr, up, rec := guardedFace(t, a, map[string]fakeDevice{"127.0.0.2": flooder, "127.0.0.3": granted})

	c := dialFrom(t, "127.0.0.2", addr)
	defer c.Close()
	info, answer := natsHello(c, "carol-app")
	if !strings.HasPrefix(info, "INFO ") {
		t.Fatalf("first line %q: the refused client must see the server's INFO", info)
	}
	want := "-ERR 'Authorization Violation: no grant of " + testCap + " for carol@example.com (carol-laptop)'\r\n"
	if answer != want {
		t.Fatalf("answer %q, want %q", answer, want)
	}
	if n := up.connectsOf("carol"); n != 0 {
		t.Fatalf("nats-server saw %d CONNECTs of the refused device", n)
	}
	ok := dialFrom(t, "127.0.0.3", addr)
	defer ok.Close()
	if _, answer := natsHello(ok, "bob-app"); answer != "PONG\r\n" {
		t.Fatalf("granted device got %q", answer)
	}
	// An address the tailnet does not know is refused too (deny by default).
	u := dialFrom(t, "127.0.0.9", addr)
	defer u.Close()
	if _, answer := natsHello(u, "who-app"); !strings.HasPrefix(answer, "-ERR 'Authorization Violation: 127.0.0.9 is not a device") {
		t.Fatalf("unknown caller got %q", answer)
	}
	var denials int
	for _, l := range rec.all() {
		if l["msg"] == "auth decision" && l["code"] == ErrNoGrant {
			denials++
		}
	}
	if denials != 2 {
		t.Fatalf("%d denial lines, want one per refused caller: %v", denials, rec.all())
	}
}

// A device with no grant keeps many connection attempts in flight; another
// device connects meanwhile, every time.
func TestFloodFromOneDeviceLeavesOthersIn(t *testing.T) {
	a := ListenArgs{
		Name: "client", Port: 4222, Target: "127.0.0.1:1", SignClients: true,
		GrantGate: &GrantGate{Capability: testCap},
		Limits:    &DeviceLimits{MaxConns: 8, Rate: 20, Burst: 10},
	}
	addr, up, rec := guardedFace(t, a, map[string]fakeDevice{"127.0.0.2": flooder, "127.0.0.3": granted})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var attempts atomic.Int64
	for range 80 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
				c, err := d.Dial("tcp", addr)
				if err != nil {
					continue
				}
				attempts.Add(1)
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				natsHello(c, "carol-flood")
				c.Close()
			}
		}()
	}
	for i := range 10 {
		c := dialFrom(t, "127.0.0.3", addr)
		if _, answer := natsHello(c, fmt.Sprint("bob-", i)); answer != "PONG\r\n" {
			t.Fatalf("granted connection %d during the flood got %q", i, answer)
		}
		c.Close()
	}
	close(stop)
	wg.Wait()
	if n := up.connectsOf("carol"); n != 0 {
		t.Fatalf("nats-server saw %d CONNECTs of the flood", n)
	}
	if got, dialed := up.accepted.Load(), attempts.Load(); got >= dialed {
		t.Fatalf("every one of %d attempts reached nats-server (%d); the limits stopped none", dialed, got)
	}
	kinds := map[any]int{}
	for _, l := range rec.all() {
		kinds[l["code"]]++
	}
	if kinds[ErrDeviceRate]+kinds[ErrDeviceConnections] == 0 || kinds[ErrNoGrant] == 0 {
		t.Fatalf("refusals logged by kind: %v", kinds)
	}
	if total := len(rec.all()); int64(total) > attempts.Load()/2 {
		t.Fatalf("%d log lines for %d attempts: the log is not bounded", total, attempts.Load())
	}
}

func TestLimitRefusalSaysWhyAndFreesNothing(t *testing.T) {
	a := ListenArgs{Name: "client", Port: 4222, Target: "127.0.0.1:1", SignClients: true, Limits: &DeviceLimits{MaxConns: 2}}
	addr, up, _ := guardedFace(t, a, map[string]fakeDevice{"127.0.0.3": granted})
	var open []net.Conn
	for i := range 2 {
		c := dialFrom(t, "127.0.0.3", addr)
		defer c.Close()
		if _, answer := natsHello(c, fmt.Sprint("bob-", i)); answer != "PONG\r\n" {
			t.Fatalf("connection %d within the limit got %q", i, answer)
		}
		open = append(open, c)
	}
	c := dialFrom(t, "127.0.0.3", addr)
	first, _ := natsHello(c, "bob-extra")
	c.Close()
	if !strings.HasPrefix(first, "-ERR 'Connection Refused: ") {
		t.Fatalf("past the limit: first line %q", first)
	}
	if n := up.connectsOf("bob-extra"); n != 0 {
		t.Fatal("the refused connection reached nats-server")
	}
	// Closing one gives its slot back.
	open[0].Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c := dialFrom(t, "127.0.0.3", addr)
		_, answer := natsHello(c, "bob-again")
		c.Close()
		if answer == "PONG\r\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a closed connection's slot never came back")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
