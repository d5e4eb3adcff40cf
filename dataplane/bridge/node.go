package bridge

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"tailscale.com/client/tailscale/apitype"
	"time"

	"tailscale.com/client/local"
	// Workload identity federation (tsnet.Server's ClientID, IDToken and
	// Audience) works only when this feature is linked in; OAuth client
	// secrets (oauthkey) are linked by tsnet itself.
	_ "tailscale.com/feature/identityfederation"
	"tailscale.com/ipn"
	"tailscale.com/ipn/ipnstate"
	"tailscale.com/net/netns"
	"tailscale.com/tsnet"
	"tailscale.com/types/logger"
)

// Options say how to join the tailnet. The control plane owns the values.
type Options struct {
	Hostname string
	Dir      string
	// Login is for the first login; tsnet ignores it once Dir holds state.
	Login
	ControlURL string
	Tags       []string
	Ephemeral  bool
	UpTimeout  time.Duration
	// Port is the WireGuard UDP port; 0 picks one.
	Port    uint16
	Verbose bool
}

// Node is one tsnet device plus the listeners and forwarders the control
// plane asked for.
type Node struct {
	Srv *tsnet.Server
	LC  *local.Client
	Log *slog.Logger

	diag    *ring
	signer  *Signer
	Denials Denials
	Quotas  Quotas
	Metrics *Metrics

	mu   sync.Mutex
	fwds map[string]*Forwarder
	// sweepMu keeps a sweep from running between a local face's listen and
	// its registration, when it would look like a stray listener.
	sweepMu sync.Mutex
}

// isLocalFace: addr is a local face's listener, which the sweep of stray
// kernel listeners must leave alone (the operator asked for it).
func (n *Node) isLocalFace(addr netip.AddrPort) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, f := range n.fwds {
		if _, ok := f.Listener.(*notFromHost); ok {
			if ap, err := netip.ParseAddrPort(f.Listener.Addr().String()); err == nil && ap == addr {
				return true
			}
		}
	}
	return false
}

// Device is the control plane's view of a tailnet device.
type Device struct {
	ID      string   `json:"id"`
	Name    string   `json:"name"` // first label of the MagicDNS name
	DNSName string   `json:"dnsName"`
	Host    string   `json:"hostName"`
	IPs     []string `json:"ips"`
	Tags    []string `json:"tags"`
	User    string   `json:"user,omitempty"` // login, for devices owned by a user
	Online  bool     `json:"online"`
	OS      string   `json:"os,omitempty"`
}

// Status is what `status` answers and what `peers` events carry.
type Status struct {
	BackendState string   `json:"backendState"`
	Self         Device   `json:"self"`
	Peers        []Device `json:"peers"`
	MagicDNS     string   `json:"magicDNSSuffix,omitempty"`
	// ProxyKey is the public nkey this bridge signs proxied client
	// connections with; nats-server trusts it (proxies.trusted).
	ProxyKey string `json:"proxyKey,omitempty"`
}

// Up joins the tailnet and waits for Running. On failure it returns a
// CodedError whose message explains what went wrong in words a user can
// act on, distilled from tsnet's own log lines, because tsnet itself only
// ever says "context deadline exceeded".
func Up(ctx context.Context, o Options, log *slog.Logger) (*Node, error) {
	if err := o.Login.check(o.Tags); err != nil {
		return nil, err
	}
	diag := newRing(200)
	// tsnet's own sockets (control, DERP, WireGuard's UDP) would otherwise be
	// pinned to the default route's interface, which an unprivileged process
	// can only do with SO_BINDTODEVICE and no fwmark: on a host with no
	// default route, or whose control server is reached another way, the
	// node never reaches it. netns exists to keep a TUN's own traffic out of
	// the tunnel; in userspace there is no TUN (tailscaled turns it off the
	// same way for its userspace mode).
	netns.SetEnabled(false)
	srv := newServer(o, func(format string, a ...any) {
		line := fmt.Sprintf(format, a...)
		diag.add(line)
		if o.Verbose {
			log.Debug(line, "component", "tsnet")
		}
	}, func(format string, a ...any) {
		line := fmt.Sprintf(format, a...)
		diag.add(line)
		log.Info(line, "component", "tsnet")
	})
	signer, err := NewSigner()
	if err != nil {
		return nil, coded(ErrKey, "making the trusted-proxy key: %w", err)
	}
	n := &Node{Srv: srv, Log: log, diag: diag, fwds: map[string]*Forwarder{}, signer: signer, Metrics: NewMetrics()}
	lc, err := srv.LocalClient()
	if err != nil {
		return nil, startFailure(o, err)
	}
	n.LC = lc

	upCtx, cancel := context.WithTimeout(ctx, o.UpTimeout)
	defer cancel()
	// Watch for states tsnet.Up ignores: NeedsLogin with an auth URL means
	// the key was refused and we would otherwise wait for a human forever.
	fail := make(chan error, 1)
	go n.watchUp(upCtx, fail)
	done := make(chan error, 1)
	go func() { _, err := srv.Up(upCtx); done <- err }()
	select {
	case err = <-done:
	case err = <-fail:
	}
	if err != nil {
		_ = srv.Close()
		return nil, n.explainUpFailure(o, err)
	}
	n.sweep()
	go func() {
		// tsnet re-creates the peerAPI listener when its addresses change,
		// which can happen at any time; a cheap periodic sweep catches it.
		t := time.NewTicker(2 * time.Second)
		defer t.Stop()
		for range t.C {
			n.sweep()
		}
	}()
	return n, nil
}

// newServer is the tsnet.Server Up starts, and all it is told.
func newServer(o Options, logf, userLogf logger.Logf) *tsnet.Server {
	l := o.Login.forTsnet(o.Ephemeral)
	return &tsnet.Server{
		Hostname:      o.Hostname,
		Dir:           o.Dir,
		AuthKey:       l.AuthKey,
		ClientSecret:  l.ClientSecret,
		ClientID:      l.ClientID,
		IDToken:       l.IDToken,
		Audience:      l.Audience,
		ControlURL:    o.ControlURL,
		AdvertiseTags: o.Tags,
		Ephemeral:     o.Ephemeral,
		Port:          o.Port,
		Logf:          logf,
		UserLogf:      userLogf,
	}
}

// startFailure explains why tsnet did not start. With a client secret or
// workload identity, tsnet first asks for an auth key (Tailscale's API,
// or the control server), and says only "error resolving auth key".
func startFailure(o Options, err error) error {
	if !o.Login.mints() || !strings.Contains(err.Error(), "resolving auth key") {
		return coded(ErrTailnetStart, "starting tsnet: %w", err)
	}
	l := strings.ToLower(err.Error())
	for _, nd := range []string{"connection refused", "no route to host", "network is unreachable", "i/o timeout", "no such host", "dial tcp"} {
		if strings.Contains(l, nd) {
			return coded(ErrTailnetControlUnreachable, "%s: cannot reach the server that mints the auth key: %w", o.Login.Method(), err)
		}
	}
	return coded(ErrTailnetAuth, "%s: minting the auth key was refused: %w", o.Login.Method(), err)
}

func (n *Node) sweep() {
	n.sweepMu.Lock()
	defer n.sweepMu.Unlock()
	for _, a := range ShutStrayListeners(n.isLocalFace) {
		n.Log.Info("stopped a kernel listener tsnet opened on a real interface", "addr", a)
	}
}

func (n *Node) watchUp(ctx context.Context, fail chan<- error) {
	w, err := n.LC.WatchIPNBus(ctx, ipn.NotifyInitialState)
	if err != nil {
		return
	}
	defer w.Close()
	for {
		nt, err := w.Next()
		if err != nil {
			return
		}
		if nt.BrowseToURL != nil && *nt.BrowseToURL != "" {
			fail <- coded(ErrTailnetAuth, "control server wants interactive login (%s): the auth key was refused or is missing", *nt.BrowseToURL)
			return
		}
		if nt.State != nil && *nt.State == ipn.Running {
			return
		}
	}
}

func (n *Node) explainUpFailure(o Options, err error) error {
	if _, ok := err.(*CodedError); ok {
		return err
	}
	lines := n.diag.snapshot()
	find := func(needles ...string) string {
		for i := len(lines) - 1; i >= 0; i-- {
			l := strings.ToLower(lines[i])
			for _, nd := range needles {
				if strings.Contains(l, nd) {
					return strings.TrimSpace(lines[i])
				}
			}
		}
		return ""
	}
	control := o.ControlURL
	if control == "" {
		control = "the Tailscale control plane"
	}
	if l := find("invalid key", "authkey", "auth key", "not valid", "expired", "unauthorized", "401", "403"); l != "" {
		return coded(ErrTailnetAuth, "the control server %s refused the auth key: %s", control, l)
	}
	if l := find("connection refused", "no route to host", "network is unreachable", "i/o timeout", "no such host", "dial tcp", "fetch control key"); l != "" {
		return coded(ErrTailnetControlUnreachable, "cannot reach the control server %s within %s: %s", control, o.UpTimeout, l)
	}
	if strings.Contains(err.Error(), "deadline") {
		return coded(ErrTailnetUpTimeout, "not connected to the tailnet within %s (control server %s); last log line: %q", o.UpTimeout, control, lastOr(lines))
	}
	return coded(ErrTailnetStart, "joining the tailnet failed: %v", err)
}

func lastOr(lines []string) string {
	if len(lines) == 0 {
		return ""
	}
	return strings.TrimSpace(lines[len(lines)-1])
}

// Status maps ipnstate.Status into the control plane's Device shape.
func (n *Node) Status(ctx context.Context) (*Status, error) {
	st, err := n.LC.Status(ctx)
	if err != nil {
		return nil, err
	}
	out := &Status{BackendState: st.BackendState, MagicDNS: st.MagicDNSSuffix, Peers: []Device{}, ProxyKey: n.signer.Public()}
	if st.Self != nil {
		out.Self = device(st, st.Self)
	}
	for _, p := range st.Peer {
		out.Peers = append(out.Peers, device(st, p))
	}
	slices.SortFunc(out.Peers, func(a, b Device) int { return strings.Compare(a.DNSName, b.DNSName) })
	return out, nil
}

func device(st *ipnstate.Status, p *ipnstate.PeerStatus) Device {
	d := Device{
		ID:      string(p.ID),
		DNSName: strings.TrimSuffix(p.DNSName, "."),
		Host:    p.HostName,
		Online:  p.Online,
		OS:      p.OS,
		IPs:     []string{},
		Tags:    []string{},
	}
	d.Name, _, _ = strings.Cut(d.DNSName, ".")
	if d.Name == "" {
		d.Name = p.HostName
	}
	for _, ip := range p.TailscaleIPs {
		d.IPs = append(d.IPs, ip.String())
	}
	if p.Tags != nil {
		d.Tags = p.Tags.AsSlice()
	}
	if len(d.Tags) == 0 {
		if u, ok := st.User[p.UserID]; ok {
			d.User = u.LoginName
		}
	}
	return d
}

// WhoIsResult is the identity behind a tailnet address.
type WhoIsResult struct {
	Device Device          `json:"device"`
	User   string          `json:"user,omitempty"`
	Caps   json.RawMessage `json:"caps,omitempty"`
	// Label is the identity as operators see it, the same text the bridge
	// puts in front of a client's connection name (IdentityLabel).
	Label string `json:"label"`
}

// whoIs asks tsnet who is behind addr, timed for the metrics.
func (n *Node) whoIs(ctx context.Context, addr string) (*apitype.WhoIsResponse, error) {
	t0 := time.Now()
	who, err := n.LC.WhoIs(ctx, addr)
	n.Metrics.WhoIs(time.Since(t0), err != nil)
	return who, err
}

func (n *Node) WhoIs(ctx context.Context, addr string) (*WhoIsResult, error) {
	who, err := n.whoIs(ctx, addr)
	if err != nil {
		return nil, coded(ErrWhois, "whois %s: %w", addr, err)
	}
	r := &WhoIsResult{}
	if who.Node != nil {
		nd := who.Node
		r.Device = Device{
			ID:      string(nd.StableID),
			DNSName: strings.TrimSuffix(nd.Name, "."),
			Host:    nd.Hostinfo.Hostname(),
			Tags:    append([]string{}, nd.Tags...),
			IPs:     []string{},
		}
		r.Device.Name, _, _ = strings.Cut(r.Device.DNSName, ".")
		for _, a := range nd.Addresses {
			r.Device.IPs = append(r.Device.IPs, a.Addr().String())
		}
		if nd.Online != nil {
			r.Device.Online = *nd.Online
		}
	}
	if who.UserProfile != nil && len(r.Device.Tags) == 0 {
		r.User = who.UserProfile.LoginName
		r.Device.User = r.User
	}
	if len(who.CapMap) > 0 {
		b, _ := json.Marshal(who.CapMap)
		r.Caps = b
	}
	login := ""
	if who.UserProfile != nil {
		login = who.UserProfile.LoginName
	}
	r.Label = IdentityLabel(r.Device.Tags, login, r.Device.Name)
	return r, nil
}

// IdentityLabel names a tailnet identity for people: the tags of a tagged
// device, the owner's login otherwise, then the device name in brackets
// ("alice@example.com (laptop)", "tag:svc (svc-1)"). It is the one place
// this text is made: connection names and the control plane's logs both
// use it.
func IdentityLabel(tags []string, login, device string) string {
	who := login
	if len(tags) > 0 {
		who = strings.Join(tags, ",")
	}
	if who == "" {
		return "(" + device + ")"
	}
	return who + " (" + device + ")"
}

// label names the tailnet identity behind an address (IdentityLabel), or
// "" when the tailnet does not know it.
func (n *Node) label(remote string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	r, err := n.WhoIs(ctx, remote)
	if err != nil || r.Device.Name == "" {
		return ""
	}
	return r.Label
}

// AdmitTags admits callers whose device carries at least one of tags.
func (n *Node) AdmitTags(tags []string) Admit {
	return func(ctx context.Context, remote netip.AddrPort) (bool, string, string) {
		who, err := n.whoIs(ctx, remote.String())
		if err != nil || who.Node == nil {
			return false, "unknown", "caller not found on the tailnet"
		}
		name := strings.TrimSuffix(who.Node.Name, ".")
		if len(who.Node.Tags) == 0 && who.UserProfile != nil {
			name += " (" + who.UserProfile.LoginName + ")"
		}
		for _, t := range who.Node.Tags {
			if slices.Contains(tags, t) {
				return true, name, ""
			}
		}
		return false, name, fmt.Sprintf("caller carries none of the tags %v (has %v)", tags, who.Node.Tags)
	}
}

// routePeer is what the tailnet (not the peer) says of the member at the
// other end of a route: its alias on our loopback cluster port lport, and
// the names it may advertise.
func (n *Node) routePeer(remote net.Addr, lport string) (RoutePeer, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	who, err := n.whoIs(ctx, remote.String())
	if err != nil || who.Node == nil {
		return RoutePeer{}, fmt.Errorf("route peer %s not found on the tailnet", remote)
	}
	peer := RoutePeer{Name: strings.TrimSuffix(who.Node.Name, "."), Log: n.Log}
	peer.Hosts = append(peer.Hosts, peer.Name)
	ips := make([]netip.Addr, 0, len(who.Node.Addresses))
	for _, a := range who.Node.Addresses {
		ips = append(ips, a.Addr())
		peer.Hosts = append(peer.Hosts, a.Addr().String())
	}
	peer.URL = net.JoinHostPort(RouteAlias(ips), lport)
	return peer, nil
}

// Listen opens a tailnet listener that forwards to a loopback target.
func (n *Node) Listen(a ListenArgs) (*ListenResult, error) {
	if err := a.Validate(); err != nil {
		return nil, err
	}
	var ln net.Listener
	var err error
	if a.Local != nil {
		n.sweepMu.Lock()
		defer n.sweepMu.Unlock()
		ln, err = a.Local.listen(n.Log, n.Metrics)
	} else if ln, err = n.Srv.Listen("tcp", fmt.Sprintf(":%d", a.Port)); err != nil {
		err = coded(ErrListen, "tailnet listen :%d: %w", a.Port, err)
	}
	if err != nil {
		return nil, err
	}
	f := &Forwarder{
		Name:        a.Name,
		Listener:    ln,
		ProxyHeader: a.ProxyProtocol,
		Log:         n.Log,
		Metrics:     n.Metrics,
		Dial: func(ctx context.Context, _ net.Conn) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", a.Target)
		},
	}
	if len(a.AllowTags) > 0 {
		f.Admit = n.AdmitTags(a.AllowTags)
	}
	var sec *tlsFace
	if a.TLS != nil {
		warn := func(err error) { n.Log.Warn("client face TLS", "listener", a.Name, "code", ErrTLS, "err", err) }
		if sec, err = newTLSFace(a.TLS, n.LC.GetCertificate, warn); err != nil {
			_ = ln.Close()
			return nil, err
		}
	}
	if a.WebSocket != nil {
		ln = newWSListener(ln, a.WebSocket, sec, n.ownNames, n.Log, newRefusalLog(n.Log, refusalLogEvery).counting(n.Metrics, a.Name))
		f.Listener = ln
	}
	face := &clientFace{denials: &n.Denials, tls: sec}
	if a.Local != nil {
		face.local = a.Local.Face
	}
	if a.SignClients {
		if a.NameClients {
			face.label = n.label
			if a.Local != nil {
				face.label = func(remote string) string { return localLabel(a.Local.Face, remote) }
			}
		}
		f.Post = func(c, up net.Conn) (net.Conn, net.Conn, error) { return n.signer.signClient(c, up, face) }
	}
	if a.Limits != nil || a.GrantGate != nil {
		n.guardClients(f, a, face) // Validate made sure this is the client face
	}
	if a.ClientQuota != nil {
		n.quotaClients(f, *a.ClientQuota) // after the guard: it wraps the Post the guard set
	}
	if rs := a.RouteSecret; rs != nil {
		// Validate made sure this does not replace the signing Post.
		_, lport, _ := net.SplitHostPort(a.Target)
		f.Post = func(c, up net.Conn) (net.Conn, net.Conn, error) {
			peer, err := n.routePeer(c.RemoteAddr(), lport)
			if err != nil {
				return nil, nil, err
			}
			return rs.InjectRoute(c, up, peer)
		}
	}
	if err := n.add(f); err != nil {
		return nil, err
	}
	return &ListenResult{Name: a.Name, Port: a.Port}, nil
}

// ownNames are the node's MagicDNS name and its first label, for the
// WebSocket face's Host check.
func (n *Node) ownNames() []string {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	st, err := n.LC.StatusWithoutPeers(ctx)
	if err != nil || st.Self == nil {
		return nil
	}
	fqdn := strings.TrimSuffix(st.Self.DNSName, ".")
	short, _, _ := strings.Cut(fqdn, ".")
	return []string{fqdn, short}
}

// Forward opens a loopback listener whose connections go out over the
// tailnet to the first target that answers.
func (n *Node) Forward(a ForwardArgs) (*ForwardResult, error) {
	if err := a.Validate(); err != nil {
		return nil, err
	}
	if a.Listen == "" {
		a.Listen = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", a.Listen)
	if err != nil {
		return nil, coded(ErrListen, "loopback listen %s: %w", a.Listen, err)
	}
	targets := slices.Clone(a.Targets)
	f := &Forwarder{
		Name:     a.Name,
		Listener: ln,
		Log:      n.Log,
		Metrics:  n.Metrics,
		Dial: func(ctx context.Context, _ net.Conn) (net.Conn, error) {
			return DialFirst(ctx, n.Srv.Dial, targets)
		},
	}
	if rs := a.RouteSecret; rs != nil {
		f.Pre = rs.CheckRoute
		_, lport, _ := net.SplitHostPort(ln.Addr().String())
		f.Post = func(local, remote net.Conn) (net.Conn, net.Conn, error) {
			peer, err := n.routePeer(remote.RemoteAddr(), lport)
			if err != nil {
				return nil, nil, err
			}
			return rs.DialedRoute(local, remote, peer)
		}
	}
	if err := n.add(f); err != nil {
		return nil, err
	}
	return &ForwardResult{Name: a.Name, Addr: f.Addr()}, nil
}

func (n *Node) add(f *Forwarder) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, dup := n.fwds[f.Name]; dup {
		_ = f.Listener.Close()
		return coded(ErrExists, "a listener named %q exists", f.Name)
	}
	n.fwds[f.Name] = f
	go f.Serve()
	return nil
}

// CloseListener removes a listener or forwarder by name. With drain, open
// connections are left to finish (lame duck moves them off gradually);
// otherwise they are cut at once.
func (n *Node) CloseListener(name string, drain bool) error {
	n.mu.Lock()
	f, ok := n.fwds[name]
	delete(n.fwds, name)
	n.mu.Unlock()
	if !ok {
		return coded(ErrNotFound, "no listener named %q", name)
	}
	if drain {
		_ = f.Listener.Close()
	} else {
		f.Close()
	}
	return nil
}

// CloseAll cuts every listener and connection, so that peers see a clean
// close instead of a tailnet connection that silently stops answering.
func (n *Node) CloseAll() {
	n.mu.Lock()
	fs := n.fwds
	n.fwds = map[string]*Forwarder{}
	n.mu.Unlock()
	for _, f := range fs {
		f.Close()
	}
}

// WatchPeers emits the status whenever the netmap changes. Up to tailscale
// 1.98 every change arrives as a full NetMap; we re-read Status rather
// than interpret the delta so that the code survives the move to deltas.
//
// onNetMap runs on every new netmap, changed peers or not: grants and
// capabilities (who may do what) arrive that way too.
func (n *Node) WatchPeers(ctx context.Context, emit func(*Status), onNetMap func()) {
	var last []byte
	for ctx.Err() == nil {
		w, err := n.LC.WatchIPNBus(ctx, ipn.NotifyInitialNetMap|ipn.NotifyNoPrivateKeys)
		if err != nil {
			time.Sleep(time.Second)
			continue
		}
		for {
			nt, err := w.Next()
			if err != nil {
				break
			}
			if nt.NetMap == nil && nt.State == nil {
				continue
			}
			n.sweep()
			if nt.NetMap != nil && onNetMap != nil {
				onNetMap()
			}
			st, err := n.Status(ctx)
			if err != nil {
				continue
			}
			b, _ := json.Marshal(st)
			if string(b) == string(last) {
				continue
			}
			last = b
			emit(st)
		}
		w.Close()
	}
}

// ring keeps the last tsnet log lines for diagnosing a failed join.
type ring struct {
	mu    sync.Mutex
	lines []string
	max   int
}

func newRing(max int) *ring { return &ring{max: max} }

func (r *ring) add(l string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lines = append(r.lines, l)
	if len(r.lines) > r.max {
		r.lines = r.lines[len(r.lines)-r.max:]
	}
}

func (r *ring) snapshot() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.lines)
}
