package bridge

import (
	"net"
	"net/netip"
	"strconv"
)

// IsLoopbackHostPort reports whether hostport is a literal loopback IP and
// a numeric port: "127.0.0.1:4222", "127.1.2.3:0", "[::1]:8080".
//
// Names are refused, "localhost" included: what a name resolves to is up
// to the host's resolver, and the product's promise is that nothing but the
// tailnet is a face. IPv6 zones are refused too; loopback needs none, and
// a zone only makes an address mean something else to someone.
func IsLoopbackHostPort(hostport string) bool { return mustLoopback(hostport) == nil }

// mustLoopback keeps the bridge from ever being told to open or reach a
// real interface. Its CodedError says which of the two ways hostport is
// wrong, for the control protocol.
func mustLoopback(hostport string) error {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return coded(ErrBadArgs, "bad address %q: %w", hostport, err)
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || ip.Zone() != "" || !ip.IsLoopback() {
		return coded(ErrNotLoopback, "address %q is not on loopback (a loopback IP literal is needed, not a name)", hostport)
	}
	// Service names ("http") would go through the resolver too.
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return coded(ErrBadArgs, "bad port in address %q", hostport)
	}
	return nil
}
