package bridge

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"slices"
	"testing"
)

// A netmap as the proxy's device sees it: two cluster nodes, a device of
// another user, a shared-in node of another tailnet, a peer without a
// MagicDNS name.
func socksNetmap() *Status {
	return &Status{
		MagicDNS: "tail.example.ts.net",
		Peers: []Device{
			{DNSName: "nats-1.tail.example.ts.net", Name: "nats-1", IPs: []string{"100.64.0.1", "fd7a:115c:a1e0::1"}, Tags: []string{"tag:nats-js"}},
			{DNSName: "nats-2.tail.example.ts.net", Name: "nats-2", IPs: []string{"fd7a:115c:a1e0::2", "100.64.0.2"}, Tags: []string{"tag:nats-js"}},
			{DNSName: "laptop.tail.example.ts.net", Name: "laptop", IPs: []string{"100.64.0.3"}, User: "bob@example.com"},
			{DNSName: "nats-9.other.ts.net", Name: "nats-9", IPs: []string{"100.99.0.9"}, Tags: []string{"tag:nats-js"}},
			{DNSName: "", Name: "bare-host", IPs: []string{"100.64.0.5"}, Tags: []string{"tag:nats-js"}},
		},
	}
}

func TestSocksPolicyDecide(t *testing.T) {
	def := &SocksPolicy{ClusterTag: "tag:nats-js", Allow: []SocksRule{{Port: 4222}}}
	wide := &SocksPolicy{ClusterTag: "tag:nats-js", Allow: []SocksRule{{Port: 4222}, {Port: 8222}, {Host: "laptop", Port: 2222}, {Host: "100.64.0.2", Port: 6222}}}
	tests := []struct {
		name    string
		p       *SocksPolicy
		network string
		dest    string
		want    []string // nil: refused
	}{
		{"short name, client port", def, "tcp", "nats-1:4222", []string{"100.64.0.1:4222", "[fd7a:115c:a1e0::1]:4222"}},
		{"IPv4 first whatever the netmap order", def, "tcp", "nats-2:4222", []string{"100.64.0.2:4222", "[fd7a:115c:a1e0::2]:4222"}},
		{"FQDN, any case, root dot", def, "tcp", "NATS-1.tail.example.ts.net.:4222", []string{"100.64.0.1:4222", "[fd7a:115c:a1e0::1]:4222"}},
		{"tailnet IPv4 is dialed as given", def, "tcp", "100.64.0.1:4222", []string{"100.64.0.1:4222"}},
		{"tailnet IPv6", def, "tcp", "[fd7a:115c:a1e0::2]:4222", []string{"[fd7a:115c:a1e0::2]:4222"}},
		{"v4-mapped tailnet IPv4", def, "tcp", "[::ffff:100.64.0.1]:4222", []string{"100.64.0.1:4222"}},
		{"shared-in node by FQDN", def, "tcp", "nats-9.other.ts.net:4222", []string{"100.99.0.9:4222"}},
		{"monitor port refused by default", def, "tcp", "nats-1:8222", nil},
		{"cluster port refused by default", def, "tcp", "100.64.0.1:6222", nil},
		{"untagged device refused", def, "tcp", "laptop:4222", nil},
		{"shared-in node has no short name here", def, "tcp", "nats-9:4222", nil},
		{"OS hostname is no tailnet name", def, "tcp", "bare-host:4222", nil},
		{"but that peer's IP is", def, "tcp", "100.64.0.5:4222", []string{"100.64.0.5:4222"}},
		{"loopback", def, "tcp", "127.0.0.1:4222", nil},
		{"localhost", def, "tcp", "localhost:4222", nil},
		{"off-tailnet IP", def, "tcp", "192.168.1.1:4222", nil},
		{"unknown tailnet IP", def, "tcp", "100.64.0.77:4222", nil},
		{"internet name", def, "tcp", "example.com:4222", nil},
		{"zone", def, "tcp", "[fe80::1%eth0]:4222", nil},
		{"service-name port", def, "tcp", "nats-1:nats", nil},
		{"port zero", def, "tcp", "nats-1:0", nil},
		{"garbage", def, "tcp", "nats-1", nil},
		{"UDP", def, "udp", "nats-1:4222", nil},
		{"widened: monitor port", wide, "tcp", "nats-2:8222", []string{"100.64.0.2:8222", "[fd7a:115c:a1e0::2]:8222"}},
		{"widened: one device by name", wide, "tcp", "laptop.tail.example.ts.net:2222", []string{"100.64.0.3:2222"}},
		{"widened: that device, other port", wide, "tcp", "laptop:4222", nil},
		{"widened: one node by IP, reached by name", wide, "tcp", "nats-2:6222", []string{"100.64.0.2:6222", "[fd7a:115c:a1e0::2]:6222"}},
		{"widened: not the other node", wide, "tcp", "nats-1:6222", nil},
		{"no cluster tag configured: bare ports admit nothing", &SocksPolicy{Allow: []SocksRule{{Port: 4222}}}, "tcp", "nats-1:4222", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.p.Decide(tt.network, tt.dest, socksNetmap())
			if tt.want == nil {
				var ce *CodedError
				if !errors.As(err, &ce) || ce.Code != ErrSocksRefused {
					t.Fatalf("Decide(%s) = %v, %v; want %s", tt.dest, got, err, ErrSocksRefused)
				}
				return
			}
			if err != nil || !slices.Equal(got, tt.want) {
				t.Fatalf("Decide(%s) = %v, %v; want %v", tt.dest, got, err, tt.want)
			}
		})
	}
}

func TestSocksPolicyAmbiguousName(t *testing.T) {
	st := socksNetmap()
	st.Peers = append(st.Peers, Device{DNSName: "nats-1.tail.example.ts.net", IPs: []string{"100.64.0.66"}, Tags: []string{"tag:nats-js"}})
	p := &SocksPolicy{ClusterTag: "tag:nats-js", Allow: []SocksRule{{Port: 4222}}}
	if got, err := p.Decide("tcp", "nats-1:4222", st); err == nil {
		t.Fatalf("a name two peers claim was resolved to %v", got)
	}
}

func TestParseSocksAllow(t *testing.T) {
	tests := []struct {
		in   string
		want []SocksRule // nil: an error
	}{
		{"4222", []SocksRule{{Port: 4222}}},
		{"4222, 8222,", []SocksRule{{Port: 4222}, {Port: 8222}}},
		{"nats-1:8222", []SocksRule{{Host: "nats-1", Port: 8222}}},
		{"NATS-1.Tail.ts.net.:8222", []SocksRule{{Host: "nats-1.tail.ts.net", Port: 8222}}},
		{"100.64.0.1:22,[fd7a:115c:a1e0::1]:22", []SocksRule{{Host: "100.64.0.1", Port: 22}, {Host: "fd7a:115c:a1e0::1", Port: 22}}},
		{"", nil},
		{" , ", nil},
		{"0", nil},
		{"65536", nil},
		{"nats", nil},
		{"nats-1:http", nil},
		{":4222", nil},
		{"*:4222", nil},
		{"tag:nats-js:4222", nil},
		{"[fe80::1%eth0]:4222", nil},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseSocksAllow(tt.in)
			if tt.want == nil {
				if err == nil {
					t.Fatalf("ParseSocksAllow(%q) = %v, want an error", tt.in, got)
				}
				return
			}
			if err != nil || !slices.Equal(got, tt.want) {
				t.Fatalf("ParseSocksAllow(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestDefaultSocksAllow(t *testing.T) {
	got, err := DefaultSocksAllow("nats-1:4222")
	if err != nil || !slices.Equal(got, []SocksRule{{Port: 4222}}) {
		t.Fatalf("DefaultSocksAllow = %v, %v", got, err)
	}
	for _, bad := range []string{"nats-1", "nats-1:nats", "nats-1:0"} {
		if _, err := DefaultSocksAllow(bad); err == nil {
			t.Errorf("DefaultSocksAllow(%q) accepted", bad)
		}
	}
}

// The dialer dials only what the policy returns, and nothing at all for a
// refused destination.
func TestSocksDialer(t *testing.T) {
	var dialed []string
	dial := func(_ context.Context, network, addr string) (net.Conn, error) {
		dialed = append(dialed, network+" "+addr)
		if addr == "100.64.0.1:4222" {
			return nil, errors.New("unreachable") // falls back to the IPv6 address
		}
		c, _ := net.Pipe()
		return c, nil
	}
	status := func(context.Context) (*Status, error) { return socksNetmap(), nil }
	p := &SocksPolicy{ClusterTag: "tag:nats-js", Allow: []SocksRule{{Port: 4222}}}
	d := SocksDialer(p, status, dial, slog.New(slog.NewTextHandler(io.Discard, nil)))

	c, err := d(context.Background(), "tcp", "nats-1:4222")
	if err != nil {
		t.Fatalf("allowed destination: %v", err)
	}
	c.Close()
	if want := []string{"tcp 100.64.0.1:4222", "tcp [fd7a:115c:a1e0::1]:4222"}; !slices.Equal(dialed, want) {
		t.Fatalf("dialed %v, want %v", dialed, want)
	}

	dialed = nil
	for _, dest := range []string{"127.0.0.1:4222", "nats-1:8222", "example.com:4222"} {
		if _, err := d(context.Background(), "tcp", dest); err == nil {
			t.Errorf("%s was let through", dest)
		}
	}
	if _, err := d(context.Background(), "udp", "nats-1:4222"); err == nil {
		t.Error("UDP was let through")
	}
	if len(dialed) != 0 {
		t.Fatalf("refused destinations were dialed: %v", dialed)
	}

	broken := SocksDialer(p, func(context.Context) (*Status, error) { return nil, errors.New("no netmap") }, dial, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if _, err := broken(context.Background(), "tcp", "nats-1:4222"); err == nil || len(dialed) != 0 {
		t.Fatalf("without a netmap: err %v, dialed %v", err, dialed)
	}
}
