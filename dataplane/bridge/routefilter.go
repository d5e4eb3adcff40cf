package bridge

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// routeReadBuffer is the read buffer of a route's peer leg: routes carry
// the cluster's traffic, so it is larger than a handshake needs.
const routeReadBuffer = 64 * 1024

// RoutePeer is what the bridge knows of the member at the other end of a
// route: not what the peer says of itself.
type RoutePeer struct {
	// URL is the host:port at which our nats-server reaches this peer: its
	// forwarder on our loopback (the route alias).
	URL string
	// Hosts are the names the peer may advertise to clients: its MagicDNS
	// name and its tailnet addresses.
	Hosts []string
	Name  string
	Log   *slog.Logger
}

// routeFilter is the leg of a route that carries the peer's stream to our
// nats-server. nats-server trusts route INFO blindly: an
// INFO naming another server makes it dial the `ip` it gives (gossip), and
// a route's own INFO gives the host and port it redials and the client URLs
// it hands to clients. So the filter keeps the route protocol's framing
// (RMSG, HMSG, LMSG, PUB and HPUB payloads pass unread) and:
//   - drops every INFO whose server_id is not the one the route's first
//     INFO gave: routes come only from membership, never from gossip;
//   - rewrites ip, host and port of the peer's INFO to the peer's route
//     alias, so any redial lands on our own forwarder for that member;
//   - keeps only client, WebSocket and leaf URLs on the peer's own
//     tailnet names, and drops gateway URLs and gateway INFO (no gateways
//     yet: gateways must come through this same filter);
//   - ends the route on any CONNECT after the handshake (it would be
//     merged into the session) and on a frame it cannot read for sure.
type routeFilter struct {
	net.Conn
	framedReader
	peer     RoutePeer
	serverID string
	dropped  int
}

func newRouteFilter(c net.Conn, r *bufio.Reader, peer RoutePeer) *routeFilter {
	f := &routeFilter{Conn: c, peer: peer}
	f.framedReader = framedReader{r: r, frame: f.frame, fail: f.fail}
	return f
}

// Read is the framed reader's (net.Conn's Read would bypass the filter).
func (f *routeFilter) Read(p []byte) (int, error) { return f.framedReader.Read(p) }

func (f *routeFilter) fail(err error) {
	if f.peer.Log != nil {
		f.peer.Log.Warn("route closed: the peer broke the route protocol", "peer", f.peer.Name, "reason", err.Error())
	}
	_ = f.Conn.Close()
}

func (f *routeFilter) CloseWrite() error { return halfClose(f.Conn) }

// prime runs a first INFO that was read before the filter existed (during
// the cluster-key handshake) through it.
func (f *routeFilter) prime(info []byte) error {
	out, _, err := f.frame(info)
	if err != nil {
		return err
	}
	f.pending = out
	return nil
}

func (f *routeFilter) frame(line []byte) ([]byte, int, error) {
	if len(line) == 0 {
		return line, 0, nil
	}
	var (
		args    []byte
		ok, hdr bool
		minArgs int
	)
	switch line[0] {
	case 'R', 'r':
		args, ok = verbArgs(line, "RMSG")
		minArgs = 2 // subject and size (the account is absent on pinned routes)
	case 'L', 'l':
		args, ok = verbArgs(line, "LMSG")
		minArgs = 3
	case 'H', 'h':
		if args, ok = verbArgs(line, "HMSG"); !ok {
			args, ok = verbArgs(line, "HPUB")
		}
		hdr, minArgs = true, 3
	case 'P', 'p':
		args, ok = verbArgs(line, "PUB")
		minArgs = 2
	case 'I', 'i':
		if args, ok := verbArgs(line, "INFO"); ok {
			out, err := f.info(args)
			return out, 0, err
		}
	case 'C', 'c':
		if isConnect(line) {
			return nil, 0, errors.New("CONNECT after the route's handshake")
		}
	}
	if !ok {
		return line, 0, nil
	}
	size, err := msgSize(args, minArgs, -1, hdr)
	if err != nil {
		return nil, 0, err
	}
	return line, size + 2, nil
}

// info decides what one INFO from the peer becomes (nil: dropped).
func (f *routeFilter) info(args []byte) ([]byte, error) {
	// Decoded the way nats-server decodes it (encoding/json, so the same
	// case folding and last-duplicate-wins), never by our own reading.
	var id struct {
		ID      string `json:"server_id"`
		Gateway string `json:"gateway"`
	}
	if err := json.Unmarshal(bytes.TrimSpace(args), &id); err != nil {
		return nil, fmt.Errorf("route INFO is not JSON: %w", err)
	}
	switch {
	case f.serverID == "" && id.ID == "":
		return nil, errors.New("route INFO without server_id")
	case f.serverID == "":
		f.serverID = id.ID
	case id.ID != f.serverID:
		// Honest servers gossip too (about each new route); we never act
		// on gossip, so this is no alarm.
		f.drop("INFO about another server (gossip)", "about", id.ID)
		return nil, nil
	}
	if id.Gateway != "" {
		f.drop("gateway INFO (no gateways are configured)")
		return nil, nil
	}
	return editJSONLine("INFO", args, f.sanitize)
}

func (f *routeFilter) drop(what string, kv ...any) {
	f.dropped++
	if f.peer.Log != nil {
		f.peer.Log.Debug("route INFO dropped", append([]any{"peer", f.peer.Name, "what", what}, kv...)...)
	}
}

// sanitize makes the addresses in the peer's INFO ours to choose.
func (f *routeFilter) sanitize(m map[string]json.RawMessage) error {
	host, port, err := net.SplitHostPort(f.peer.URL)
	if err != nil {
		return err
	}
	p, _ := strconv.Atoi(port)
	setField(m, "ip", "nats-route://"+f.peer.URL+"/")
	setField(m, "host", host)
	setField(m, "port", p)
	dropField(m, "gateway_url")
	for _, key := range []string{"connect_urls", "ws_connect_urls", "leafnode_urls"} {
		var urls []string
		if err := json.Unmarshal(fieldOf(m, key), &urls); err != nil || len(urls) == 0 {
			dropField(m, key)
			continue
		}
		setField(m, key, keepOwn(urls, f.peer.Hosts))
	}
	return nil
}

// fieldOf is the value nats-server would read for key: encoding/json takes
// the last of the case-folded duplicates, and json.Marshal of the map sorts
// them, so one variant is as good as another once setField has run. Before
// that, any variant will do to decide what to keep.
func fieldOf(m map[string]json.RawMessage, key string) json.RawMessage {
	for k, v := range m {
		if strings.EqualFold(k, key) {
			return v
		}
	}
	return nil
}

// keepOwn keeps the URLs ("host:port", maybe with a scheme) whose host is
// one of the peer's own: a member advertises itself, never a third party.
func keepOwn(urls, hosts []string) []string {
	out := []string{}
	for _, u := range urls {
		hp := u
		if i := strings.Index(hp, "://"); i >= 0 {
			hp = hp[i+3:]
		}
		hp = strings.TrimSuffix(hp, "/")
		h, _, err := net.SplitHostPort(hp)
		if err != nil {
			continue
		}
		h = strings.TrimSuffix(h, ".")
		for _, own := range hosts {
			if strings.EqualFold(h, strings.TrimSuffix(own, ".")) {
				out = append(out, u)
				break
			}
		}
	}
	return out
}

// rewriteInfo is rewriteConnect for INFO.
func rewriteInfo(line []byte, edit func(map[string]json.RawMessage) error) ([]byte, error) {
	args, ok := verbArgs(line, "INFO")
	if !ok {
		return nil, errors.New("line is not INFO")
	}
	return editJSONLine("INFO", args, edit)
}

// editJSONLine parses a verb's JSON argument, lets edit change its fields
// and returns the canonical line. Unknown fields pass through untouched.
func editJSONLine(verb string, args []byte, edit func(map[string]json.RawMessage) error) ([]byte, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(bytes.TrimSpace(args), &m); err != nil || m == nil {
		return nil, fmt.Errorf("%s is not a JSON object", verb)
	}
	if err := edit(m); err != nil {
		return nil, err
	}
	out, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	return append(append([]byte(verb+" "), out...), '\r', '\n'), nil
}

// RouteAlias is the loopback address at which every node reaches a member's
// route forwarder: 127 and the last three bytes of its tailnet IPv4
// address, or for an IPv6-only member a stable hash in 127.128.0.0/9. It
// must agree with the control plane's routeAlias (cluster/members.ts);
// testdata/route-alias.json holds both to the same cases.
func RouteAlias(ips []netip.Addr) string {
	for _, ip := range ips {
		if ip.Is4() {
			b := ip.As4()
			return fmt.Sprintf("127.%d.%d.%d", b[1], b[2], b[3])
		}
	}
	s := ""
	if len(ips) > 0 {
		s = ips[0].String()
	}
	h := uint32(2166136261) // FNV-1a
	for i := 0; i < len(s); i++ {
		h = (h ^ uint32(s[i])) * 16777619
	}
	return fmt.Sprintf("127.%d.%d.%d", 128+((h>>16)&0x7f), (h>>8)&0xff, max(2, h&0xff))
}
