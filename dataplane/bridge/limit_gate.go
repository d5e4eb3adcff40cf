package bridge

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"tailscale.com/client/tailscale/apitype"
	"tailscale.com/tailcfg"
)

// GrantGate, in auth mode tailnet, refuses callers that nothing could
// admit: no grant of Capability in their WhoIs capability map, and no
// config rule naming their login (Users) or one of their tags (Tags). The
// auth callout would tell them "no grant" too, but only after nats-server
// had asked it and it had signed an answer; the bridge tells them the same
// before nats-server sees a CONNECT. Whatever passes the gate is still
// decided by the callout (a malformed grant, say, is its to refuse).
type GrantGate struct {
	Capability string   `json:"capability"`
	Users      []string `json:"users"`
	Tags       []string `json:"tags"`
}

func (g GrantGate) Validate() error {
	if g.Capability == "" {
		return coded(ErrBadArgs, "grantGate needs capability")
	}
	return nil
}

// admits mirrors the control plane's decide (policy.ts): a tagged device
// is its tags, any other device its owner's login.
func (g GrantGate) admits(tags []string, login string, caps tailcfg.PeerCapMap) bool {
	if len(caps[tailcfg.PeerCapability(g.Capability)]) > 0 {
		return true
	}
	if len(tags) == 0 {
		return login != "" && slices.Contains(g.Users, login)
	}
	return slices.ContainsFunc(tags, func(t string) bool { return slices.Contains(g.Tags, t) })
}

// errRefused: the guard refused the connection and has logged why.
var errRefused = errors.New("refused by the client face")

// clientGuard is the first step of every connection on the client face:
// it names the caller (WhoIs), holds its device to the limits and, with a
// gate, marks callers that nothing could admit. All of it happens before
// nats-server sees the connection, so a device's flood costs the bridge a
// WhoIs per attempt and nats-server nothing.
type clientGuard struct {
	face   string
	whois  func(ctx context.Context, addr string) (*apitype.WhoIsResponse, error)
	limits *deviceLimiter // nil: no limits
	gate   *GrantGate     // nil: every caller goes on to nats-server
	log    *refusalLog
	tls    *tlsFace // nil: the face speaks plain NATS
	local  string   // a local face's name: its callers are not tailnet devices
}

// callerConn is a client connection with what the guard learnt of its caller.
type callerConn struct {
	net.Conn
	key     string // the device's stable ID, or the address when the tailnet does not know it
	label   string // IdentityLabel; "" when the tailnet does not know the caller
	ip      string
	refusal string // why the gate refused the caller; "" when it may go on
}

func (c *callerConn) CloseWrite() error { return halfClose(c.Conn) }

// Unwrap gives the connection the guard wrapped (asWebSocket looks through it).
func (c *callerConn) Unwrap() net.Conn { return c.Conn }

func (c *callerConn) labelOf(string) string { return c.label }

// who is the caller for log lines.
func (c *callerConn) who() string {
	if c.label != "" {
		return c.label
	}
	return "unknown"
}

// admit is the Forwarder's Guard. Limits come before the gate, so that a
// device refused for its rate costs no upstream dial either.
func (g *clientGuard) admit(ctx context.Context, c net.Conn) (net.Conn, func(), error) {
	cc := g.identify(ctx, c)
	release := func() {}
	if g.limits != nil {
		rel, code, reason := g.limits.acquire(cc.key)
		if code != "" {
			g.log.refused(cc.key, code, "connection refused", "listener", g.face, "from", c.RemoteAddr().String(), "who", cc.who(), "reason", reason)
			refuseEarly(c, reason)
			return nil, nil, errRefused
		}
		release = rel
	}
	if g.gate != nil && cc.refusal != "" {
		// The same line the callout logs for its own decisions.
		g.log.refused(cc.key, ErrNoGrant, "auth decision", "decision", "deny", "by", "bridge", "who", cc.who(), "ip", cc.ip, "reason", cc.refusal)
	}
	return cc, release, nil
}

// identify asks the tailnet who is calling and, with a gate, whether
// anything could admit it.
func (g *clientGuard) identify(ctx context.Context, c net.Conn) *callerConn {
	remote := c.RemoteAddr().String()
	cc := &callerConn{Conn: c, ip: remote}
	if ap, err := netip.ParseAddrPort(remote); err == nil {
		cc.ip = ap.Addr().String()
	}
	cc.key = "ip:" + cc.ip
	if g.local != "" {
		// Not a tailnet address: asking the tailnet would be pointless.
		cc.label = localLabel(g.local, remote)
		return cc
	}
	wctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	who, err := g.whois(wctx, remote)
	cancel()
	if err != nil || who == nil || who.Node == nil {
		if g.gate != nil {
			cc.refusal = fmt.Sprintf("%s is not a device on this tailnet", cc.ip)
		}
		return cc
	}
	nd := who.Node
	login := ""
	if who.UserProfile != nil {
		login = who.UserProfile.LoginName
	}
	name, _, _ := strings.Cut(strings.TrimSuffix(nd.Name, "."), ".")
	cc.key = "node:" + string(nd.StableID)
	if name != "" {
		cc.label = IdentityLabel(nd.Tags, login, name)
	}
	if g.gate != nil && !g.gate.admits(nd.Tags, login, who.CapMap) {
		cc.refusal = fmt.Sprintf("no grant of %s for %s", g.gate.Capability, IdentityLabel(nd.Tags, login, name))
	}
	return cc
}

// logHandshake is the Forwarder's LogRefusal: a broken handshake is logged
// per caller at the refusal log's pace.
func (g *clientGuard) logHandshake(c net.Conn, err error) {
	key, who := "ip:"+c.RemoteAddr().String(), "unknown"
	if cc, ok := c.(*callerConn); ok {
		key, who = cc.key, cc.who()
	}
	code := ErrClientHandshake
	var ce *CodedError
	if errors.As(err, &ce) {
		code = ce.Code // a client certificate refused (ERR_CLIENT_CERT)
	}
	g.log.refused(key, code, "connection refused", "listener", g.face, "from", c.RemoteAddr().String(), "who", who, "reason", err.Error())
}

// post wraps the client face's Post: a caller the gate refused is answered
// here; any other goes on to next, named from the guard's own WhoIs.
func (g *clientGuard) post(nameClients bool, next func(c, up net.Conn, label func(string) string) (net.Conn, net.Conn, error)) func(c, up net.Conn) (net.Conn, net.Conn, error) {
	return func(c, up net.Conn) (net.Conn, net.Conn, error) {
		cc, ok := c.(*callerConn)
		if !ok {
			return nil, nil, errors.New("connection did not pass the guard")
		}
		if cc.refusal != "" {
			refuseClient(cc, up, cc.refusal, g.tls)
			return nil, nil, errRefused
		}
		var label func(string) string
		if nameClients {
			label = cc.labelOf
		}
		return next(c, up, label)
	}
}

// refuseClient answers a caller the way nats-server answers a refused
// CONNECT, so that its client reports the reason as an authorization
// error: the server's INFO, then after the client's first line the
// authorization violation with the reason, then the end. nats-server gets
// no CONNECT, so its auth callout is never asked.
func refuseClient(c, up net.Conn, reason string, sec *tlsFace) {
	defer up.Close()
	c, _, err := hello(c, bufio.NewReaderSize(up, 4096), sec)
	if err != nil {
		return
	}
	_ = up.Close()
	if _, err := readLine(bufio.NewReaderSize(c, 4096)); err != nil {
		return
	}
	_, _ = c.Write([]byte("-ERR 'Authorization Violation: " + protoSafe(reason) + "'\r\n"))
	closeGently(c)
}

// refuseEarly tells a caller refused at accept why, in a NATS error line
// where nats-server's INFO would be, and hangs up.
func refuseEarly(c net.Conn, reason string) {
	_ = c.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = c.Write([]byte("-ERR 'Connection Refused: " + protoSafe(reason) + "'\r\n"))
	_ = c.Close()
}

// closeGently half-closes c and reads what the caller still sends before
// closing: closing with unread input would reset the connection, and a
// reset can overtake the error line the caller has not read yet.
func closeGently(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, _ = io.Copy(io.Discard, io.LimitReader(c, 64<<10))
	_ = c.Close()
}

// protoSafe keeps a reason inside -ERR '...': no quotes, no line breaks.
func protoSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\'' || r == '\r' || r == '\n' {
			return ' '
		}
		return r
	}, s)
}

// validateGuard: limits and the gate speak NATS to the callers they
// refuse, so they belong to the client face (signClients).
func (a ListenArgs) validateGuard() error {
	if (a.Limits != nil || a.GrantGate != nil) && !a.SignClients {
		return coded(ErrBadArgs, "listen %q: limits and grantGate work only with signClients", a.Name)
	}
	if a.Limits != nil {
		if err := a.Limits.Validate(); err != nil {
			return err
		}
	}
	if a.GrantGate != nil {
		return a.GrantGate.Validate()
	}
	return nil
}

// guardClients puts a clientGuard in front of the client face f: limits
// per device, the grant gate, refusals logged at a bounded pace. It wraps
// the Post that signClients set.
func (n *Node) guardClients(f *Forwarder, a ListenArgs, face *clientFace) {
	n.guardClientsWith(f, a, n.whoIs, face)
}

func (n *Node) guardClientsWith(f *Forwarder, a ListenArgs, whois func(context.Context, string) (*apitype.WhoIsResponse, error), face *clientFace) {
	g := &clientGuard{face: a.Name, whois: whois, gate: a.GrantGate, log: newRefusalLog(n.Log, refusalLogEvery).counting(n.Metrics, a.Name), tls: face.tls, local: face.local}
	if a.Limits != nil {
		g.limits = newDeviceLimiter(*a.Limits)
	}
	f.Guard = g.admit
	f.LogRefusal = g.logHandshake
	f.Post = g.post(a.NameClients, func(c, up net.Conn, label func(string) string) (net.Conn, net.Conn, error) {
		named := *face
		named.label = label
		return n.signer.signClient(c, up, &named)
	})
}

// refusalLogEvery: one line per caller and code of refusal in this time.
const refusalLogEvery = 10 * time.Second
