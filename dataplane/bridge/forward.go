package bridge

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
)

// Admit decides whether an inbound tailnet connection may pass. It returns a
// reason when it refuses, so that the refusal can be logged with who asked.
type Admit func(ctx context.Context, remote netip.AddrPort) (ok bool, who string, reason string)

// Pump copies bytes both ways and half-closes each side when the other is
// done, so that protocols that shut down their write side (PROXY, HTTP/1.0
// clients, `nc -N`) see EOF rather than a reset.
// It returns the bytes copied from a to b and from b to a.
func Pump(a, b net.Conn) (aToB, bToA int64) {
	var wg sync.WaitGroup
	wg.Add(2)
	cp := func(dst, src net.Conn, n *int64) {
		defer wg.Done()
		*n, _ = io.Copy(dst, src)
		_ = halfClose(dst)
	}
	go cp(a, b, &bToA)
	go cp(b, a, &aToB)
	wg.Wait()
	_ = a.Close()
	_ = b.Close()
	return aToB, bToA
}

// Reasons a forwarder refuses for that carry no code of their own (a
// metric label; the log line says more).
const (
	reasonNotAdmitted = "not_admitted" // Admit said no (the cluster face: no cluster tag)
	reasonUpstream    = "upstream_unreachable"
	reasonHandshake   = "bad_handshake" // a route's or forward's Pre or Post failed
)

// Forwarder accepts on one listener and relays each connection to a dialer.
type Forwarder struct {
	Name     string
	Listener net.Listener
	// Dial opens the upstream leg for one accepted connection.
	Dial func(ctx context.Context, c net.Conn) (net.Conn, error)
	// Admit, when set, is asked before anything is dialed.
	Admit Admit
	// Guard, when set, runs first on every connection. It returns the
	// connection to go on with and a release to run when it ends, or an
	// error when it refused it (it has then answered the caller and logged
	// why).
	Guard func(ctx context.Context, c net.Conn) (net.Conn, func(), error)
	// LogRefusal, when set, logs a failed Pre or Post in place of a line
	// each, so that a flood of bad handshakes does not flood the log.
	LogRefusal func(c net.Conn, err error)
	// ProxyHeader, when set, writes a PROXY v2 header carrying the
	// caller's tailnet address on the upstream leg before any payload.
	ProxyHeader bool
	// Pre, when set, inspects the caller before anything is dialed; the
	// bytes it returns are written upstream first (a rewritten first line).
	Pre func(c net.Conn) (net.Conn, []byte, error)
	// Post, when set, runs on both legs after the dial (protocol handshakes).
	Post func(c, up net.Conn) (net.Conn, net.Conn, error)
	Log  *slog.Logger
	// Metrics, when set, counts connections, refusals and bytes under Name.
	Metrics *Metrics

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

func (f *Forwarder) Addr() string { return f.Listener.Addr().String() }

// Serve runs until the listener is closed.
func (f *Forwarder) Serve() {
	for {
		c, err := f.Listener.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				f.Log.Warn("accept failed", "listener", f.Name, "err", err)
			}
			return
		}
		// Tracked before its goroutine starts, so that Close cannot miss
		// a connection it raced with.
		if !f.track(c) {
			_ = c.Close()
			continue
		}
		go f.handle(c)
	}
}

// track registers c for Close; it reports false once Close has run.
func (f *Forwarder) track(c net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return false
	}
	if f.conns == nil {
		f.conns = map[net.Conn]struct{}{}
	}
	f.conns[c] = struct{}{}
	return true
}

func (f *Forwarder) untrack(c net.Conn) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.conns, c)
}

func (f *Forwarder) handle(c net.Conn) {
	defer f.untrack(c)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	remote, _ := netip.ParseAddrPort(c.RemoteAddr().String())
	if f.Guard != nil {
		gc, release, err := f.Guard(ctx, c)
		if err != nil {
			_ = c.Close()
			return
		}
		defer release()
		c = gc
	}
	if f.Admit != nil {
		ok, who, reason := f.Admit(ctx, remote)
		if !ok {
			f.Log.Warn("connection refused", "listener", f.Name, "from", remote.String(), "who", who, "reason", reason)
			f.Metrics.Refused(f.Name, reasonNotAdmitted)
			_ = c.Close()
			return
		}
	}
	var first []byte
	if f.Pre != nil {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		wrapped, b, err := f.Pre(c)
		if err != nil {
			f.refused(c, remote, err)
			_ = c.Close()
			return
		}
		_ = c.SetReadDeadline(time.Time{})
		c, first = wrapped, b
	}
	up, err := f.Dial(ctx, c)
	if err != nil {
		f.Log.Warn("upstream dial failed", "listener", f.Name, "from", remote.String(), "err", err)
		f.Metrics.Refused(f.Name, reasonUpstream)
		_ = c.Close()
		return
	}
	if f.ProxyHeader {
		h := proxyproto.HeaderProxyFromAddrs(2, c.RemoteAddr(), c.LocalAddr())
		if _, err := h.WriteTo(up); err != nil {
			f.Log.Warn("PROXY header write failed", "listener", f.Name, "err", err)
			_ = c.Close()
			_ = up.Close()
			return
		}
	}
	if first != nil {
		if _, err := up.Write(first); err != nil {
			_ = c.Close()
			_ = up.Close()
			return
		}
	}
	if f.Post != nil {
		// A silent or slow-talking caller must not hold a slot forever.
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_ = up.SetReadDeadline(time.Now().Add(10 * time.Second))
		nc, nup, err := f.Post(c, up)
		if err != nil {
			f.refused(c, remote, err)
			_ = c.Close()
			_ = up.Close()
			return
		}
		_ = c.SetReadDeadline(time.Time{})
		_ = up.SetReadDeadline(time.Time{})
		c, up = nc, nup
	}
	f.Metrics.Opened(f.Name)
	in, out := Pump(c, up)
	f.Metrics.Closed(f.Name, in, out)
}

// refused logs a failed handshake, unless the guard refused it and said so.
func (f *Forwarder) refused(c net.Conn, remote netip.AddrPort, err error) {
	switch {
	case errors.Is(err, errRefused):
	case f.LogRefusal != nil:
		f.LogRefusal(c, err) // counted by the guard's refusal log
	default:
		f.Log.Warn("connection refused", "listener", f.Name, "from", remote.String(), "reason", err.Error())
		code := reasonHandshake
		var ce *CodedError
		if errors.As(err, &ce) {
			code = ce.Code
		}
		f.Metrics.Refused(f.Name, code)
	}
}

// Close stops accepting and cuts every open connection: a removed listener
// must not leave old sessions running on a policy that no longer holds.
func (f *Forwarder) Close() {
	_ = f.Listener.Close()
	f.mu.Lock()
	f.closed = true
	for c := range f.conns {
		_ = c.Close()
	}
	f.mu.Unlock()
}

// DialFirst tries each target in order and returns the first connection
// that opens. Peers have an IPv4 and an IPv6 tailnet address; one of them
// may be unreachable on a given path, so we never rely on the first alone.
func DialFirst(ctx context.Context, dial func(ctx context.Context, network, addr string) (net.Conn, error), targets []string) (net.Conn, error) {
	var errs []error
	for _, t := range targets {
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		c, err := dial(dctx, "tcp", t)
		cancel()
		if err == nil {
			return c, nil
		}
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		return nil, errors.New("no targets")
	}
	return nil, errors.Join(errs...)
}
