package bridge

import (
	"bytes"
	"encoding/json"
	"net"
	"net/netip"
)

// The request args, results and event payloads of the control protocol.
// Field names are camelCase and spelled out in tags, because the
// TypeScript control plane writes them by hand and testdata/
// control-protocol.json pins both sides to the same spelling.

// Event names the bridge emits, with the type of each one's data.
const (
	EventUp     = "up"     // Status, once on the tailnet (both modes)
	EventPeers  = "peers"  // Status, whenever it changes (node mode)
	EventNetmap = "netmap" // no data: a new netmap, grants may have changed (node mode)
	EventReady  = "ready"  // ReadyEvent, once listening (client mode)
	EventFatal  = "fatal"  // ErrorBody, just before the bridge exits
)

// StatusArgs: `status` takes no args.
type StatusArgs struct{}

// WhoisArgs asks who is behind a tailnet address ("ip" or "ip:port").
type WhoisArgs struct {
	Addr string `json:"addr"`
}

func (a WhoisArgs) Validate() error {
	if a.Addr == "" {
		return coded(ErrBadArgs, "whois needs addr")
	}
	return nil
}

// ListenArgs opens a tailnet listener that forwards to a local target.
type ListenArgs struct {
	Name          string   `json:"name"`
	Port          int      `json:"port"`
	Target        string   `json:"target"`
	ProxyProtocol bool     `json:"proxyProtocol,omitempty"`
	AllowTags     []string `json:"allowTags,omitempty"`
	// SignClients makes this a NATS trusted proxy: proxy_sig goes into
	// every client's CONNECT.
	SignClients bool `json:"signClients,omitempty"`
	// NameClients prefixes each client's CONNECT name with its tailnet
	// identity ("alice@example.com (laptop)" or "tag:svc (svc-1)").
	NameClients bool `json:"nameClients,omitempty"`
	// RouteSecret is put into every inbound route's CONNECT.
	RouteSecret *RouteSecret `json:"routeSecret,omitempty"`
	// Limits bound each source device's connections (client face only).
	Limits *DeviceLimits `json:"limits,omitempty"`
	// GrantGate refuses callers that nothing could admit before
	// nats-server asks its auth callout (client face, auth mode tailnet).
	GrantGate *GrantGate `json:"grantGate,omitempty"`
	// ClientQuota is every client connection's quota until the control
	// plane sets its identity's (the `quota` op; client face only).
	ClientQuota *Quota `json:"clientQuota,omitempty"`
	// TLS, when set, makes clients speak TLS to the bridge, which
	// terminates it (client face only; see tlsface.go).
	TLS *ClientTLS `json:"tls,omitempty"`
	// WebSocket, when set, makes this the client face for WebSocket
	// clients: NATS in binary messages (wss:// with TLS; see wsface.go).
	WebSocket *WebSocketFace `json:"webSocket,omitempty"`
	// Local, when set, listens on an address of this host instead of the
	// tailnet (a client face for containers on a docker bridge, say; see
	// localface.go).
	Local *LocalFace `json:"local,omitempty"`
}

// Validate refuses incomplete and contradictory listeners before anything
// is opened. Signing clients and injecting a route secret are the client
// face and the cluster face: one connection's first line can be only one
// of those, and applying one silently instead of the other would leave a
// face without the protection the control plane asked for.
func (a ListenArgs) Validate() error {
	if a.Name == "" || a.Port <= 0 || a.Port > 65535 || a.Target == "" {
		return coded(ErrBadArgs, "listen needs name, port 1-65535 and target")
	}
	if a.SignClients && a.RouteSecret != nil {
		return coded(ErrBadArgs, "listen %q: signClients and routeSecret exclude each other (client face or cluster face)", a.Name)
	}
	if a.NameClients && !a.SignClients {
		return coded(ErrBadArgs, "listen %q: nameClients works only with signClients", a.Name)
	}
	if err := a.validateGuard(); err != nil {
		return err
	}
	if err := a.validateQuota(); err != nil {
		return err
	}
	if a.Local != nil {
		if err := a.Local.Validate(a); err != nil {
			return err
		}
	}
	if a.WebSocket != nil {
		if !a.SignClients {
			return coded(ErrBadArgs, "listen %q: webSocket works only with signClients (a client face)", a.Name)
		}
		if err := a.WebSocket.Validate(a.Name); err != nil {
			return err
		}
	}
	if a.TLS != nil {
		if !a.SignClients {
			return coded(ErrBadArgs, "listen %q: tls works only with signClients (the client face)", a.Name)
		}
		if err := a.TLS.Validate(a.Name); err != nil {
			return err
		}
	}
	if a.RouteSecret != nil {
		// The bridge vouches for a route by injecting the secret; without
		// a tag check it would vouch for every device on the tailnet.
		if len(a.AllowTags) == 0 {
			return coded(ErrBadArgs, "listen %q: routeSecret needs allowTags", a.Name)
		}
		if err := a.RouteSecret.Validate(); err != nil {
			return err
		}
	}
	return mustLoopback(a.Target)
}

// ListenResult answers `listen`.
type ListenResult struct {
	Name string `json:"name"`
	Port int    `json:"port"`
}

// ForwardArgs opens a loopback listener whose connections are dialed out
// over the tailnet to the first reachable target.
type ForwardArgs struct {
	Name string `json:"name"`
	// Listen is the loopback address to listen on; empty means
	// 127.0.0.1 on any free port.
	Listen  string   `json:"listen,omitempty"`
	Targets []string `json:"targets"`
	// RouteSecret, when set, admits only callers whose route CONNECT
	// carries it (our own nats-server) and strips it before it leaves.
	RouteSecret *RouteSecret `json:"routeSecret,omitempty"`
}

func (a ForwardArgs) Validate() error {
	if a.Name == "" || len(a.Targets) == 0 {
		return coded(ErrBadArgs, "forward needs name and targets")
	}
	for _, t := range a.Targets {
		if _, _, err := net.SplitHostPort(t); err != nil {
			return coded(ErrBadArgs, "forward %q: bad target %q: %w", a.Name, t, err)
		}
	}
	if a.RouteSecret != nil {
		if err := a.RouteSecret.Validate(); err != nil {
			return err
		}
	}
	if a.Listen != "" {
		return mustLoopback(a.Listen)
	}
	return nil
}

// ForwardResult answers `forward` with the address actually listened on.
type ForwardResult struct {
	Name string `json:"name"`
	Addr string `json:"addr"`
}

// CloseArgs removes a listener or forwarder; see Node.CloseListener.
type CloseArgs struct {
	Name  string `json:"name"`
	Drain bool   `json:"drain,omitempty"`
}

func (a CloseArgs) Validate() error {
	if a.Name == "" {
		return coded(ErrBadArgs, "close needs name")
	}
	return nil
}

// DeniedArgs tells the bridge why the control plane refused a caller, so
// that the caller's -ERR says so; see Denials.
type DeniedArgs struct {
	IP     string `json:"ip"`
	Reason string `json:"reason,omitempty"`
}

// Validate wants a bare IP: Denials are looked up by the caller's address
// without port, and anything else would never match.
func (a DeniedArgs) Validate() error {
	if _, err := netip.ParseAddr(a.IP); err != nil {
		return coded(ErrBadArgs, "denied needs ip: %w", err)
	}
	return nil
}

// ReadyEvent is the data of the client mode's "ready" event.
type ReadyEvent struct {
	Listen string `json:"listen"`
	To     string `json:"to"`
	Socks5 string `json:"socks5,omitempty"`
}

// DecodeArgs decodes a request's args into v, refusing fields v does not
// know: a field the bridge would silently ignore (a misspelt allowTags,
// say) could leave a face open that the control plane believes is shut.
// Absent args decode as {}. If v has a Validate method, it runs too.
func DecodeArgs(raw json.RawMessage, v any) error {
	if len(bytes.TrimSpace(raw)) == 0 || bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		raw = json.RawMessage("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return coded(ErrBadArgs, "bad args: %w", err)
	}
	if val, ok := v.(interface{ Validate() error }); ok {
		return val.Validate()
	}
	return nil
}
