package bridge

import (
	"net/netip"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ShutStrayListeners stops every TCP listener of this process that is bound
// to a non-loopback address, except those keep names (the local faces the
// operator configured), and returns what it stopped.
//
// Why: tsnet's peerAPI opens a kernel listener on 0.0.0.0:<port> even in
// userspace mode, although netstack already serves peerAPI traffic that
// arrives over the tailnet (wgengine/netstack intercepts the peerAPI port).
// That kernel socket is a face on every real interface of the host, which
// this product promises not to have. shutdown(2) on a listening socket
// moves it out of LISTEN without closing the descriptor, so the Go runtime
// that owns the fd is never confused by a reused descriptor number.
func ShutStrayListeners(keep func(netip.AddrPort) bool) []string {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return nil
	}
	var shut []string
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if link, err := os.Readlink("/proc/self/fd/" + e.Name()); err != nil || !strings.HasPrefix(link, "socket:") {
			continue
		}
		if v, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN); err != nil || v == 0 {
			continue
		}
		if t, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE); err != nil || t != unix.SOCK_STREAM {
			continue
		}
		sa, err := unix.Getsockname(fd)
		if err != nil {
			continue
		}
		var ap netip.AddrPort
		switch a := sa.(type) {
		case *unix.SockaddrInet4:
			ap = netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port))
		case *unix.SockaddrInet6:
			ap = netip.AddrPortFrom(netip.AddrFrom16(a.Addr).Unmap(), uint16(a.Port))
		default:
			continue // unix sockets are not network faces
		}
		if ap.Addr().IsLoopback() || (keep != nil && keep(ap)) {
			continue
		}
		if unix.Shutdown(fd, unix.SHUT_RDWR) == nil {
			shut = append(shut, ap.String())
		}
	}
	return shut
}
