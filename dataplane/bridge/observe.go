package bridge

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"tailscale.com/ipn/ipnstate"
	"tailscale.com/tailcfg"
)

// ObserveArgs asks for what an operator looks at: this device's key and
// health, each peer's path, and the bridge's counters. Ping names the peers
// (tailnet IPs) whose latency to measure now; the control plane passes the
// cluster's members only, so a tailnet of a thousand devices costs a
// handful of disco pings per look.
type ObserveArgs struct {
	Ping []string `json:"ping,omitempty"`
}

// maxPings bounds the pings one look may ask for.
const maxPings = 64

func (a ObserveArgs) Validate() error {
	if len(a.Ping) > maxPings {
		return coded(ErrBadArgs, "observe: at most %d peers to ping, got %d", maxPings, len(a.Ping))
	}
	for _, ip := range a.Ping {
		if _, err := netip.ParseAddr(ip); err != nil {
			return coded(ErrBadArgs, "observe: ping %q is not an IP address", ip)
		}
	}
	return nil
}

// Observed is one look at the tailnet from this device.
type Observed struct {
	BackendState string `json:"backendState"`
	// KeyExpiry is when this device's node key expires; nil when it never does (tagged devices, usually).
	KeyExpiry  *time.Time `json:"keyExpiry,omitempty"`
	KeyExpired bool       `json:"keyExpired"`
	// Health is tsnet's own list of problems (empty when healthy).
	Health []string   `json:"health"`
	Peers  []PeerPath `json:"peers"`
	// Metrics are the faces' counters since the bridge started.
	Metrics MetricsSnapshot `json:"metrics"`
}

// PeerPath is how this device reaches one peer.
type PeerPath struct {
	Name   string   `json:"name"`
	IPs    []string `json:"ips"`
	Online bool     `json:"online"`
	// Path: "direct" (a UDP endpoint), "peer-relay", "derp" (relayed by a
	// DERP server) or "none" (no WireGuard session yet).
	Path          string     `json:"path"`
	Endpoint      string     `json:"endpoint,omitempty"`
	Relay         string     `json:"relay,omitempty"`
	LastHandshake *time.Time `json:"lastHandshake,omitempty"`
	RxBytes       int64      `json:"rxBytes"`
	TxBytes       int64      `json:"txBytes"`
	// LatencyMs is a disco ping's round trip, when this look pinged the peer.
	LatencyMs *float64 `json:"latencyMs,omitempty"`
	PingError string   `json:"pingError,omitempty"`
}

// pathOf names the path tsnet uses to a peer right now.
func pathOf(p *ipnstate.PeerStatus) string {
	switch {
	case p.CurAddr != "":
		return "direct"
	case p.PeerRelay != "":
		return "peer-relay"
	case p.Relay != "" && !p.LastHandshake.IsZero():
		return "derp"
	default:
		return "none"
	}
}

// Observe answers the "observe" op.
func (n *Node) Observe(ctx context.Context, a ObserveArgs) (*Observed, error) {
	st, err := n.LC.Status(ctx)
	if err != nil {
		return nil, coded(ErrTailnet, "tailnet status: %w", err)
	}
	out := &Observed{BackendState: st.BackendState, Health: slices.Clone(st.Health), Peers: []PeerPath{}, Metrics: n.Metrics.Snapshot()}
	if out.Health == nil {
		out.Health = []string{}
	}
	if st.Self != nil {
		out.KeyExpiry = st.Self.KeyExpiry
		out.KeyExpired = st.Self.Expired || (st.Self.KeyExpiry != nil && time.Now().After(*st.Self.KeyExpiry))
	}
	for _, p := range st.Peer {
		d := device(st, p)
		pp := PeerPath{Name: d.Name, IPs: d.IPs, Online: p.Online, Path: pathOf(p), Endpoint: p.CurAddr, Relay: p.Relay, RxBytes: p.RxBytes, TxBytes: p.TxBytes}
		if pp.Path == "peer-relay" {
			pp.Endpoint = p.PeerRelay
		}
		if !p.LastHandshake.IsZero() {
			t := p.LastHandshake
			pp.LastHandshake = &t
		}
		out.Peers = append(out.Peers, pp)
	}
	slices.SortFunc(out.Peers, func(a, b PeerPath) int { return strings.Compare(a.Name, b.Name) })
	n.ping(ctx, out.Peers, a.Ping)
	return out, nil
}

// ping measures the round trip to the asked peers at once, each within 2 s.
func (n *Node) ping(ctx context.Context, peers []PeerPath, ips []string) {
	var wg sync.WaitGroup
	for i := range peers {
		p := &peers[i]
		if !slices.ContainsFunc(p.IPs, func(ip string) bool { return slices.Contains(ips, ip) }) {
			continue
		}
		ip, err := netip.ParseAddr(p.IPs[0])
		if err != nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			r, err := n.LC.Ping(pctx, ip, tailcfg.PingDisco)
			switch {
			case err != nil:
				p.PingError = err.Error()
			case r.Err != "":
				p.PingError = r.Err
			default:
				ms := r.LatencySeconds * 1000
				p.LatencyMs = &ms
			}
		}()
	}
	wg.Wait()
}
