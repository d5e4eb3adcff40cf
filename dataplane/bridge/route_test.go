package bridge

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"
)

var testPeer = RoutePeer{URL: "127.64.0.2:16222", Hosts: []string{"nats-2.example.ts.net", "100.64.0.2"}, Name: "nats-2"}

func TestCheckRoute(t *testing.T) {
	rs := RouteSecret{User: "route", Pass: "s3cret"}
	tests := []struct {
		name    string
		connect string
		ok      bool
	}{
		{"right secret", `{"user":"route","pass":"s3cret","name":"n1","cluster":"c"}`, true},
		{"right secret with variant keys", `{"user":"route","pass":"s3cret","User":"x","PASS":"y","name":"n1"}`, true},
		{"wrong pass", `{"user":"route","pass":"guess","name":"n1"}`, false},
		{"wrong user", `{"user":"admin","pass":"s3cret"}`, false},
		{"secret split differently", `{"user":"route\u0000s3","pass":"cret"}`, false},
		{"no secret", `{"name":"n1"}`, false},
		{"secret under another case only", `{"User":"route","Pass":"s3cret"}`, false},
		{"not a string", `{"user":["route"],"pass":"s3cret"}`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := pipeLine(t, "CONNECT "+tt.connect+"\r\nPING\r\n")
			local, _, err := rs.CheckRoute(c)
			if !tt.ok {
				if err == nil {
					t.Fatalf("CheckRoute admitted %s", tt.connect)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			rl := local.(*routeLocal)
			wrapped, out := rl.Conn, rl.connect
			m := connectFields(t, out)
			if ks := append(foldKeys(m, "user"), foldKeys(m, "pass")...); len(ks) != 0 {
				t.Errorf("credentials left in the outbound CONNECT: %q", ks)
			}
			if m["name"] != "n1" {
				t.Errorf("other fields lost: %v", m)
			}
			rest, _ := io.ReadAll(wrapped)
			if string(rest) != "PING\r\n" {
				t.Errorf("bytes after CONNECT = %q, want PING", rest)
			}
		})
	}
}

// peerWith is a tailnet connection whose far end (the dialing peer) has
// already sent data.
func peerWith(t *testing.T, data string) net.Conn {
	dialSide, listenSide := wire(t, "100.64.0.1:40000", "100.64.0.2:6222")
	go func() { _, _ = dialSide.Write([]byte(data)) }()
	return listenSide
}

// serverUpstream is our nats-server's end of an inbound route: it sends its
// INFO at once, as nats-server does.
func serverUpstream(t *testing.T) (up, server net.Conn) {
	up, server = net.Pipe()
	t.Cleanup(func() { up.Close(); server.Close() })
	_ = server.SetDeadline(time.Now().Add(5 * time.Second))
	go func() { _, _ = server.Write([]byte(`INFO {"server_id":"B"}` + "\r\n")) }()
	return up, server
}

func TestInjectRoute(t *testing.T) {
	rs := RouteSecret{User: "route", Pass: "s3cret"}
	// A peer cannot outvote the injected secret with a folded spelling.
	peer := peerWith(t, `CONNECT {"name":"n2","user":"evil","pa\u017fs":"x","USER":"y"}`+"\r\nPING\r\n")
	up, upFar := serverUpstream(t)
	type result struct {
		c   net.Conn
		err error
	}
	done := make(chan result, 1)
	go func() {
		c, _, err := rs.InjectRoute(peer, up, testPeer)
		done <- result{c, err}
	}()
	line, err := readLine(bufio.NewReader(upFar))
	if err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	m := connectFields(t, line)
	want := map[string]any{"name": "n2", "user": "route", "pass": "s3cret"}
	if !jsonEqual(t, m, want) {
		t.Errorf("upstream CONNECT = %v, want %v", m, want)
	}
	buf := make([]byte, 6)
	if _, err := io.ReadFull(r.c, buf); err != nil || string(buf) != "PING\r\n" {
		t.Errorf("bytes after CONNECT = %q (%v), want PING", buf, err)
	}
}

func TestInjectRouteRefusesNonConnect(t *testing.T) {
	rs := RouteSecret{User: "route", Pass: "s3cret"}
	up, _ := serverUpstream(t)
	if _, _, err := rs.InjectRoute(peerWith(t, "PING\r\n"), up, testPeer); err == nil {
		t.Error("InjectRoute passed a first line that is not CONNECT")
	}
}

// addrConn gives a pipe the tailnet addresses a route proof is bound to.
type addrConn struct {
	net.Conn
	local, remote net.Addr
}

func (c addrConn) LocalAddr() net.Addr  { return c.local }
func (c addrConn) RemoteAddr() net.Addr { return c.remote }

func tcpAddr(s string) net.Addr { return net.TCPAddrFromAddrPort(netip.MustParseAddrPort(s)) }

// wire is a tailnet connection from dialer to listener, as each end sees it.
func wire(t *testing.T, dialer, listener string) (dialSide, listenSide net.Conn) {
	// Loopback TCP, not net.Pipe: like the tailnet, it buffers, so both
	// ends may write before either reads.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	_ = a.SetDeadline(time.Now().Add(5 * time.Second))
	_ = b.SetDeadline(time.Now().Add(5 * time.Second))
	return addrConn{a, tcpAddr(dialer), tcpAddr(listener)}, addrConn{b, tcpAddr(listener), tcpAddr(dialer)}
}

// handshake runs a whole route set-up between node A (dialing) and node B
// (accepting), each end with its own secret and cluster key, and returns
// what B's nats-server received and what A's nats-server reads first.
func handshake(t *testing.T, keyA, keyB string) (connectAtB map[string]any, infoAtA []byte, errA, errB error) {
	t.Helper()
	rsA := RouteSecret{User: "route", Pass: "a-secret", ClusterKey: keyA}
	rsB := RouteSecret{User: "route", Pass: "b-secret", ClusterKey: keyB}
	localA, serverA := net.Pipe()
	upB, serverB := net.Pipe()
	t.Cleanup(func() { localA.Close(); serverA.Close(); upB.Close(); serverB.Close() })
	for _, c := range []net.Conn{localA, serverA, upB, serverB} {
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	}
	aSide, bSide := wire(t, "100.64.0.1:40000", "100.64.0.2:6222")

	// A's nats-server dials its forwarder; B's accepts from its bridge.
	go func() { _, _ = serverA.Write([]byte(`CONNECT {"user":"route","pass":"a-secret","name":"A"}` + "\r\n")) }()
	gotB := make(chan map[string]any, 1)
	go func() {
		_, _ = serverB.Write([]byte(`INFO {"server_id":"B","name":"B","ip":"nats-route://10.0.0.9:4444/","connect_urls":["nats-2.example.ts.net:4222","evil.example.com:4222"]}` + "\r\n"))
		line, err := readLine(bufio.NewReader(serverB))
		if err != nil {
			gotB <- nil
			return
		}
		gotB <- connectFields(t, line)
	}()
	doneB := make(chan error, 1)
	go func() {
		_, _, err := rsB.InjectRoute(bSide, upB, RoutePeer{URL: "127.64.0.1:16222", Hosts: []string{"nats-1.example.ts.net"}})
		if err != nil {
			bSide.Close()
		}
		doneB <- err
	}()
	local, _, err := rsA.CheckRoute(localA)
	if err != nil {
		t.Fatal(err)
	}
	_, remote, errA := rsA.DialedRoute(local, aSide, testPeer)
	if errA != nil {
		aSide.Close()
	} else {
		infoAtA, _ = readLine(bufio.NewReader(remote))
	}
	errB = <-doneB
	if errB == nil {
		connectAtB = <-gotB
	}
	return connectAtB, infoAtA, errA, errB
}

const key1 = "0123456789abcdef0123456789abcdef-one"
const key2 = "0123456789abcdef0123456789abcdef-two"

func TestRouteHandshakeWithClusterKey(t *testing.T) {
	connect, info, errA, errB := handshake(t, key1, key1)
	if errA != nil || errB != nil {
		t.Fatalf("route refused: A %v, B %v", errA, errB)
	}
	if connect["user"] != "route" || connect["pass"] != "b-secret" || connect["name"] != "A" {
		t.Errorf("B's nats-server got CONNECT %v: want B's own secret and A's name", connect)
	}
	if ks := foldKeys(connect, proofField); len(ks) != 0 {
		t.Errorf("the proof reached B's nats-server: %v", connect)
	}
	m := connectFields(t, append([]byte("CONNECT "), bytes.TrimPrefix(info, []byte("INFO "))...))
	if ks := foldKeys(m, proofField); len(ks) != 0 {
		t.Errorf("the proof reached A's nats-server: %s", info)
	}
	if m["ip"] != "nats-route://"+testPeer.URL+"/" || m["host"] != "127.64.0.2" {
		t.Errorf("A's nats-server was given %v/%v, want the peer's alias", m["ip"], m["host"])
	}
	urls, _ := json.Marshal(m["connect_urls"])
	if string(urls) != `["nats-2.example.ts.net:4222"]` {
		t.Errorf("connect_urls = %s: a member may advertise only itself", urls)
	}
}

func TestRouteHandshakeRefusesAWrongOrMissingKey(t *testing.T) {
	for _, c := range []struct{ name, a, b string }{
		{"different keys", key1, key2},
		{"dialer without a key", "", key1},
		{"listener without a key", key1, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, _, errA, errB := handshake(t, c.a, c.b)
			if errA == nil && errB == nil {
				t.Fatal("a route was made without both ends proving the same key")
			}
			if c.b != "" && errB == nil {
				t.Errorf("B admitted a dialer that proved nothing: A said %v", errA)
			}
		})
	}
}

func TestClusterProofIsBoundToBothEndsAndTheRole(t *testing.T) {
	a, b, r := netip.MustParseAddr("100.64.0.1"), netip.MustParseAddr("100.64.0.2"), netip.MustParseAddr("100.64.0.66")
	base := clusterProof(key1, roleDial, a, b)
	for name, other := range map[string]string{
		"other dialer":   clusterProof(key1, roleDial, r, b),
		"other listener": clusterProof(key1, roleDial, a, r),
		"other role":     clusterProof(key1, roleAccept, a, b),
		"other key":      clusterProof(key2, roleDial, a, b),
	} {
		if other == base {
			t.Errorf("%s gives the same proof", name)
		}
	}
	if clusterProof(key1, roleDial, netip.MustParseAddr("::ffff:100.64.0.1"), b) != base {
		t.Error("a v4-mapped address is not the same address")
	}
}

// filtered runs a peer's stream through a route filter and returns what
// our nats-server would read.
func filtered(t *testing.T, in string) (string, error) {
	t.Helper()
	c := pipeLine(t, in)
	f := newRouteFilter(c, bufio.NewReader(c), testPeer)
	out, _ := io.ReadAll(f)
	return string(out), f.err
}

func TestRouteFilter(t *testing.T) {
	first := `INFO {"server_id":"B","ip":"nats-route://127.0.0.1:19999/","host":"10.1.1.1","port":7}` + "\r\n"
	wantFirst := `INFO {"host":"127.64.0.2","ip":"nats-route://127.64.0.2:16222/","port":16222,"server_id":"B"}` + "\r\n"
	tests := []struct {
		name, in, want string
		broken         bool
	}{
		{"the first INFO's addresses become the alias", first, wantFirst, false},
		{"gossip about another server is dropped", first + `INFO {"server_id":"X","ip":"nats-route://127.0.0.1:19999/"}` + "\r\nPING\r\n", wantFirst + "PING\r\n", false},
		{"server_id spelled another way is still read", first + `INFO {"SERVER_ID":"X","ip":"nats-route://127.0.0.1:1/"}` + "\r\n", wantFirst, false},
		{"gateway INFO is dropped", first + `INFO {"server_id":"B","gateway":"g2","gateway_urls":["10.0.0.1:7222"]}` + "\r\n", wantFirst, false},
		{"payloads pass unread, even when they look like INFO",
			first + "RMSG $G foo 40\r\nINFO {\"server_id\":\"X\",\"ip\":\"evil\"}\r\n1234\r\nPONG\r\n",
			wantFirst + "RMSG $G foo 40\r\nINFO {\"server_id\":\"X\",\"ip\":\"evil\"}\r\n1234\r\nPONG\r\n", false},
		{"header messages frame by total size",
			first + "HMSG $G foo + reply q1 q2 12 14\r\nNATS/1.0\r\n\r\nhi\r\nPING\r\n",
			wantFirst + "HMSG $G foo + reply q1 q2 12 14\r\nNATS/1.0\r\n\r\nhi\r\nPING\r\n", false},
		{"subscriptions pass", first + "RS+ $G foo.> q 1\r\nLS+ $G x\r\n", wantFirst + "RS+ $G foo.> q 1\r\nLS+ $G x\r\n", false},
		{"a later CONNECT ends the route", first + `CONNECT {"name":"evil"}` + "\r\n", wantFirst, true},
		{"a first INFO without server_id ends it", `INFO {"ip":"x"}` + "\r\n", "", true},
		{"a CR inside a message line ends it", first + "RMSG $G foo\r 4\r\nabcd\r\n", wantFirst, true},
		{"a bad size ends it", first + "RMSG $G foo 4x\r\nabcd\r\n", wantFirst, true},
		{"a header size above the total ends it", first + "HMSG $G foo 9 4\r\nabcd\r\n", wantFirst, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := filtered(t, tt.in)
			if got != tt.want {
				t.Errorf("nats-server read\n%q\nwant\n%q", got, tt.want)
			}
			if broken := err != nil && err != io.EOF; broken != tt.broken {
				t.Errorf("route ended with %v, want broken=%v", err, tt.broken)
			}
		})
	}
}

// The alias must be the control plane's (cluster/members.ts routeAlias):
// both are held to the same cases.
func TestRouteAliasFixture(t *testing.T) {
	b, err := os.ReadFile("testdata/route-alias.json")
	if err != nil {
		t.Fatal(err)
	}
	var cases []struct {
		IPs   []string `json:"ips"`
		Alias string   `json:"alias"`
	}
	if err := json.Unmarshal(b, &cases); err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		var ips []netip.Addr
		for _, s := range c.IPs {
			ips = append(ips, netip.MustParseAddr(s))
		}
		if got := RouteAlias(ips); got != c.Alias {
			t.Errorf("RouteAlias(%v) = %s, want %s", c.IPs, got, c.Alias)
		}
	}
}
