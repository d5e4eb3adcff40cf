package bridge

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
)

// Local faces: the client face served on an address of the node's own
// host, for callers that are not tailnet devices (containers on a docker
// bridge, the reference design's "dockerbridge" variant). Nothing here is
// the tailnet's word: the caller is its source address on that face, the
// bridge asserts only which face it came through (Assertion.Face), and the
// auth callout admits it only by a rule naming that face. Loopback and the
// unspecified addresses are refused: loopback is no back door, and 0.0.0.0
// would put NATS on every interface of the host.

// LocalFace is ListenArgs.Local.
type LocalFace struct {
	// Listen is the host address and port, e.g. "172.17.0.1:4222".
	Listen string `json:"listen"`
	// Face is the name rules use for it (auth.rules[].faces).
	Face string `json:"face"`
}

func (l *LocalFace) Validate(a ListenArgs) error {
	ap, err := netip.ParseAddrPort(l.Listen)
	if err != nil {
		return coded(ErrBadArgs, "listen %q: local %q is not an IP address and port", a.Name, l.Listen)
	}
	addr := ap.Addr().Unmap()
	switch {
	case addr.IsLoopback():
		return coded(ErrBadArgs, "listen %q: local %s is loopback, which stays closed to clients", a.Name, l.Listen)
	case addr.IsUnspecified():
		return coded(ErrBadArgs, "listen %q: local %s would listen on every interface; name one address", a.Name, l.Listen)
	case l.Face == "":
		return coded(ErrBadArgs, "listen %q: local needs a face name", a.Name)
	case strconv.Itoa(int(ap.Port())) != strconv.Itoa(a.Port):
		return coded(ErrBadArgs, "listen %q: local %s and port %d differ", a.Name, l.Listen, a.Port)
	case !a.SignClients:
		return coded(ErrBadArgs, "listen %q: local works only with signClients (a client face)", a.Name)
	case a.GrantGate != nil || len(a.AllowTags) > 0:
		// Both ask the tailnet about the caller, which is not a tailnet device.
		return coded(ErrBadArgs, "listen %q: local faces take no grantGate or allowTags (their callers are not tailnet devices)", a.Name)
	}
	return nil
}

// listen opens the face on the host's own network.
func (l *LocalFace) listen(log *slog.Logger, m *Metrics) (net.Listener, error) {
	ln, err := net.Listen("tcp", l.Listen)
	if err != nil {
		return nil, coded(ErrListen, "local face %s on %s: %w", l.Face, l.Listen, err)
	}
	return &notFromHost{Listener: ln, face: l.Face, own: hostAddrs, log: newRefusalLog(log, refusalLogEvery).counting(m, "local:"+l.Face)}, nil
}

// notFromHost refuses callers whose source is an address of this host: a
// process on the node's own host could otherwise use the face's address
// (or any other of the host's) to get what loopback refuses it.
type notFromHost struct {
	net.Listener
	face string
	own  func() map[netip.Addr]bool
	log  *refusalLog
}

func (l *notFromHost) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ap, perr := netip.ParseAddrPort(c.RemoteAddr().String())
		if perr != nil || !l.own()[ap.Addr().Unmap()] {
			return c, nil
		}
		l.log.refused("ip:"+ap.Addr().String(), ErrLocalFromHost, "connection refused", "listener", "local:"+l.face, "from", c.RemoteAddr().String(), "reason", "a process on this host")
		go refuseEarly(c, "local face "+l.face+" is for containers and hosts on its network, not for processes on this host")
	}
}

// hostAddrs is every address of this host's interfaces.
func hostAddrs() map[netip.Addr]bool {
	out := map[netip.Addr]bool{}
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil {
			out[p.Addr().Unmap()] = true
		}
	}
	return out
}

// localLabel names a local face's caller for /connz and the logs.
func localLabel(face, remote string) string {
	ip := remote
	if ap, err := netip.ParseAddrPort(remote); err == nil {
		ip = ap.Addr().String()
	}
	return fmt.Sprintf("local:%s (%s)", face, ip)
}
