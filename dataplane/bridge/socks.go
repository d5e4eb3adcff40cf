package bridge

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// DialFunc is the shape of tsnet.Server.Dial and of socks5.Server.Dialer.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// SocksRule admits one port, either on every peer that carries the cluster
// tag (Host empty) or on one peer named by MagicDNS name or tailnet IP.
type SocksRule struct {
	Host string
	Port uint16
}

func (r SocksRule) String() string {
	if r.Host == "" {
		return strconv.Itoa(int(r.Port))
	}
	return net.JoinHostPort(r.Host, strconv.Itoa(int(r.Port)))
}

// SocksPolicy decides where the client proxy's SOCKS5 port may lead. Without
// it, SOCKS5 relays any local user to anything the device's ACL allows, and
// through the host's own dialer to anything off the tailnet, all under the
// device owner's identity.
type SocksPolicy struct {
	ClusterTag string
	Allow      []SocksRule
}

// ParseSocksAllow reads a comma-separated allow list. An entry is a port
// ("8222": that port on every peer carrying the cluster tag) or host:port
// ("nats-1:8222", "nats-1.example.ts.net:8222", "100.64.0.7:8222",
// "[fd7a:115c:a1e0::7]:8222": that one peer, whatever its tags).
func ParseSocksAllow(list string) ([]SocksRule, error) {
	var rules []SocksRule
	for entry := range strings.SplitSeq(list, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		r, err := parseSocksRule(entry)
		if err != nil {
			return nil, err
		}
		rules = append(rules, r)
	}
	if len(rules) == 0 {
		return nil, fmt.Errorf("empty SOCKS5 allow list %q", list)
	}
	return rules, nil
}

func parseSocksRule(entry string) (SocksRule, error) {
	if p, err := parsePort(entry); err == nil {
		return SocksRule{Port: p}, nil
	}
	host, port, err := net.SplitHostPort(entry)
	if err != nil {
		return SocksRule{}, fmt.Errorf("SOCKS5 allow entry %q: want a port or host:port", entry)
	}
	p, err := parsePort(port)
	if err != nil {
		return SocksRule{}, fmt.Errorf("SOCKS5 allow entry %q: %v", entry, err)
	}
	h, ok := normalHost(host)
	if !ok {
		return SocksRule{}, fmt.Errorf("SOCKS5 allow entry %q: want a MagicDNS name or a tailnet IP", entry)
	}
	return SocksRule{Host: h, Port: p}, nil
}

// DefaultSocksAllow admits the port of the proxy's --to on every cluster
// node: the client port, so that clients can follow the cluster's advertised
// names from one node to the next.
func DefaultSocksAllow(to string) ([]SocksRule, error) {
	_, port, err := net.SplitHostPort(to)
	if err != nil {
		return nil, fmt.Errorf("bad --to %q: %v", to, err)
	}
	p, err := parsePort(port)
	if err != nil {
		return nil, fmt.Errorf("bad --to %q: %v", to, err)
	}
	return []SocksRule{{Port: p}}, nil
}

// parsePort takes numbers only: a service name would need the resolver.
func parsePort(s string) (uint16, error) {
	p, err := strconv.ParseUint(s, 10, 16)
	if err != nil || p == 0 {
		return 0, fmt.Errorf("bad port %q", s)
	}
	return uint16(p), nil
}

// normalHost gives a name in lower case without its root dot, or an IP in
// canonical form (v4-mapped v6 unmapped), so that both compare as strings.
// Zones are refused: a tailnet address never carries one.
func normalHost(h string) (string, bool) {
	if ip, err := netip.ParseAddr(h); err == nil {
		if ip.Zone() != "" {
			return "", false
		}
		return ip.Unmap().String(), true
	}
	h = strings.ToLower(strings.TrimSuffix(h, "."))
	if h == "" || strings.ContainsFunc(h, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '.')
	}) {
		return "", false
	}
	return h, true
}

// Decide returns the tailnet addresses to dial for a SOCKS5 destination, or
// a CodedError (ErrSocksRefused) that says why not. Names and addresses are
// looked up in this device's netmap (st) only, never through the host's
// resolver: a destination that is not a tailnet peer is refused, which also
// closes tsnet's fallback to the host's own network.
func (p *SocksPolicy) Decide(network, dest string, st *Status) ([]string, error) {
	if network != "tcp" {
		return nil, refused("%s to %s: only TCP CONNECT is relayed", network, dest)
	}
	host, portStr, err := net.SplitHostPort(dest)
	if err != nil {
		return nil, refused("bad destination %q", dest)
	}
	port, err := parsePort(portStr)
	if err != nil {
		return nil, refused("bad destination %q", dest)
	}
	h, ok := normalHost(host)
	if !ok {
		return nil, refused("%s is not a tailnet name or address", dest)
	}
	peer, err := findPeer(h, st)
	if err != nil {
		return nil, err
	}
	if !p.allows(peer, port, st) {
		return nil, refused("port %d on %s is not in the SOCKS5 allow list", port, peer.DNSName)
	}
	if _, err := netip.ParseAddr(h); err == nil {
		return []string{net.JoinHostPort(h, portStr)}, nil
	}
	return peerTargets(peer, port), nil
}

func refused(format string, a ...any) error { return coded(ErrSocksRefused, format, a...) }

// findPeer is the one peer that a name or address denotes. A short name is
// the tailnet's own MagicDNS name with the suffix left off, as MagicDNS
// reads it; an FQDN may name a shared-in peer of another tailnet.
func findPeer(h string, st *Status) (Device, error) {
	var found []Device
	for _, d := range st.Peers {
		if peerIs(d, h, st.MagicDNS) {
			found = append(found, d)
		}
	}
	switch len(found) {
	case 0:
		return Device{}, refused("%s is not a peer in this device's netmap", h)
	case 1:
		return found[0], nil
	}
	return Device{}, refused("%s names %d peers", h, len(found))
}

// peerIs says whether the normalized host h denotes device d.
func peerIs(d Device, h string, suffix string) bool {
	if ip, err := netip.ParseAddr(h); err == nil {
		return slices.ContainsFunc(d.IPs, func(s string) bool {
			a, err := netip.ParseAddr(s)
			return err == nil && a.Unmap() == ip
		})
	}
	fqdn := strings.ToLower(strings.TrimSuffix(d.DNSName, "."))
	if fqdn == "" {
		return false // no MagicDNS name: an OS hostname is no tailnet name
	}
	short := strings.TrimSuffix(fqdn, "."+strings.ToLower(strings.TrimSuffix(suffix, ".")))
	return h == fqdn || (suffix != "" && short != fqdn && h == short)
}

func (p *SocksPolicy) allows(peer Device, port uint16, st *Status) bool {
	return slices.ContainsFunc(p.Allow, func(r SocksRule) bool {
		if r.Port != port {
			return false
		}
		if r.Host == "" {
			return p.ClusterTag != "" && slices.Contains(peer.Tags, p.ClusterTag)
		}
		return peerIs(peer, r.Host, st.MagicDNS)
	})
}

// peerTargets lists a peer's tailnet addresses, IPv4 first, as DialFirst wants.
func peerTargets(d Device, port uint16) []string {
	ips := make([]netip.Addr, 0, len(d.IPs))
	for _, s := range d.IPs {
		if ip, err := netip.ParseAddr(s); err == nil {
			ips = append(ips, ip.Unmap())
		}
	}
	slices.SortStableFunc(ips, func(a, b netip.Addr) int { return cmp.Compare(a.BitLen(), b.BitLen()) })
	out := make([]string, len(ips))
	for i, ip := range ips {
		out[i] = netip.AddrPortFrom(ip, port).String()
	}
	return out
}

// SocksDialer is the Dialer for socks5.Server: every destination goes
// through the policy against the current netmap (status), and only the
// tailnet addresses it returns are dialed. Refusals are logged, one line
// each, with the destination and the reason.
func SocksDialer(p *SocksPolicy, status func(context.Context) (*Status, error), dial DialFunc, log *slog.Logger) DialFunc {
	return func(ctx context.Context, network, dest string) (net.Conn, error) {
		st, err := status(ctx)
		if err != nil {
			log.Warn("socks5: no netmap to check a destination against", "dest", dest, "err", err)
			return nil, err
		}
		targets, err := p.Decide(network, dest, st)
		if err != nil {
			log.Warn("socks5 destination refused", "code", ErrSocksRefused, "dest", dest, "reason", err.Error())
			return nil, err
		}
		log.Debug("socks5 connect", "dest", dest, "targets", targets)
		return DialFirst(ctx, dial, targets)
	}
}
