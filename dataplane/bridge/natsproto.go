package bridge

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nkeys"
)

// maxProtoLine bounds the INFO and CONNECT lines we parse. A CONNECT with a
// user JWT is a few KiB; anything near this is hostile and is refused
// before it reaches nats-server.
const maxProtoLine = 64 * 1024

var errLineTooLong = errors.New("protocol line too long")

// readLine reads one CRLF-terminated protocol line, refusing long ones.
func readLine(r *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		frag, err := r.ReadSlice('\n')
		line = append(line, frag...)
		if len(line) > maxProtoLine {
			return nil, errLineTooLong
		}
		if err == nil {
			return line, nil
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return nil, err
		}
	}
}

// rewriteConnect parses "CONNECT {json}\r\n", lets edit change the
// fields, and returns the new line. Unknown fields pass through untouched.
// The verb is matched as nats-server's parser does: case-insensitively, with
// any run of spaces and tabs (or none) before the argument; the line that
// leaves is always canonical "CONNECT {json}\r\n".
func rewriteConnect(line []byte, edit func(map[string]json.RawMessage) error) ([]byte, error) {
	if !isConnect(line) {
		return nil, fmt.Errorf("line is not CONNECT")
	}
	body := bytes.TrimRight(line[len("CONNECT"):], "\r\n")
	var m map[string]json.RawMessage
	if err := json.Unmarshal(bytes.TrimSpace(body), &m); err != nil {
		return nil, fmt.Errorf("CONNECT is not a JSON object: %w", err)
	}
	if m == nil {
		return nil, fmt.Errorf("CONNECT is not a JSON object")
	}
	if err := edit(m); err != nil {
		return nil, err
	}
	out, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	return append(append([]byte("CONNECT "), out...), '\r', '\n'), nil
}

// setField sets key in a CONNECT object after dropping every key that
// nats-server would read as the same field. It decodes CONNECT with
// encoding/json, which matches keys case-insensitively with Unicode
// folding ("proxy_\u017fig", long s, is proxy_sig) and lets the last
// duplicate win; json.Marshal sorts map keys, so a variant sorting after
// ours would override the value the bridge vouches for.
func setField(m map[string]json.RawMessage, key string, v any) {
	dropField(m, key)
	m[key], _ = json.Marshal(v)
}

// dropField deletes key and every variant nats-server would fold into it.
func dropField(m map[string]json.RawMessage, key string) {
	for k := range m {
		if strings.EqualFold(k, key) {
			delete(m, k)
		}
	}
}

// bufConn is a net.Conn whose reads come through a bufio.Reader, so bytes
// read ahead while parsing the first line are not lost to the pump.
type bufConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufConn) Read(p []byte) (int, error) { return c.r.Read(p) }
func (c *bufConn) CloseWrite() error          { return halfClose(c.Conn) }

// halfClose shuts c's write side when it can (Pump half-closes so that a
// peer that stops sending still reads our EOF), and closes it otherwise.
// Every wrapper around a connection hands CloseWrite down through it.
func halfClose(c net.Conn) error {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Close()
}

// Signer holds the trusted-proxy key. It is made fresh in memory at every
// start and never written anywhere: only this process can sign, so only
// connections that came through the tailnet face carry a valid proxy_sig.
type Signer struct {
	kp  nkeys.KeyPair
	pub string
}

func NewSigner() (*Signer, error) {
	kp, err := nkeys.CreateServer()
	if err != nil {
		return nil, err
	}
	pub, err := kp.PublicKey()
	if err != nil {
		return nil, err
	}
	return &Signer{kp: kp, pub: pub}, nil
}

func (s *Signer) Public() string { return s.pub }

// SignClient relays the server's INFO to the client, then signs the INFO
// nonce into the client's CONNECT as proxy_sig (nats-server's trusted
// proxies). A client-supplied proxy_sig is replaced, never trusted.
func (s *Signer) SignClient(client, upstream net.Conn) (net.Conn, net.Conn, error) {
	return s.signClient(client, upstream, &clientFace{})
}

// clientFace is what one client listener adds to signing: every field may
// be left out.
type clientFace struct {
	// denials, when set, explains the callout's refusals to the client.
	denials *Denials
	// label, when set, names each connection after its caller (IdentityLabel).
	label func(remote string) string
	// tls, when set, makes clients speak TLS (and checks their certificates).
	tls *tlsFace
	// local names the local face (ListenArgs.Local), asserted to the callout.
	local string
}

// hello relays the server's INFO to the client (over TLS when the face has
// it) and returns the connection to speak NATS on, and INFO's nonce.
func hello(client net.Conn, ur *bufio.Reader, sec *tlsFace) (net.Conn, string, error) {
	info, err := readLine(ur)
	if err != nil {
		return nil, "", fmt.Errorf("reading server INFO: %w", err)
	}
	var fields struct {
		Nonce string `json:"nonce"`
	}
	infoBody, ok := bytes.CutPrefix(info, []byte("INFO "))
	if !ok || json.Unmarshal(bytes.TrimSpace(infoBody), &fields) != nil || fields.Nonce == "" {
		return nil, "", errors.New("server INFO carries no nonce: is nats-server configured with this bridge as a trusted proxy?")
	}
	if _, ok := asWebSocket(client); ok {
		// WebSocket (its TLS, if any, is the HTTP server's): no TCP URLs.
		if info, err = wsInfo(info); err != nil {
			return nil, "", err
		}
	} else if sec != nil {
		c, err := sec.present(client, info)
		return c, fields.Nonce, err
	}
	_, err = client.Write(info)
	return client, fields.Nonce, err
}

// signClient also, when face.label is set, prefixes the client's CONNECT
// name with its tailnet identity, so /connz and `nats server report
// connections` show who is connected whatever name the client chose. With
// face.tls, the client speaks TLS, and with a client CA its certificate is
// checked; that and a local face are asserted in auth_token (Assertion).
func (s *Signer) signClient(client, upstream net.Conn, face *clientFace) (net.Conn, net.Conn, error) {
	denials, label, sec := face.denials, face.label, face.tls
	ur := bufio.NewReaderSize(upstream, 4096)
	client, nonce, err := hello(client, ur, sec)
	if err != nil {
		return nil, nil, err
	}
	cr := bufio.NewReaderSize(client, 4096)
	line, err := readLine(cr)
	if err != nil {
		return nil, nil, fmt.Errorf("reading client CONNECT: %w", err)
	}
	cert, refusal := sec.clientIdentity(client, time.Now())
	if refusal != "" {
		_, _ = client.Write([]byte("-ERR 'Authorization Violation: " + protoSafe(refusal) + "'\r\n"))
		closeGently(client)
		return nil, nil, coded(ErrClientCert, "%s", refusal)
	}
	assertion := Assertion{Face: face.local, Cert: cert}.token()
	sig, err := s.kp.Sign([]byte(nonce))
	if err != nil {
		return nil, nil, err
	}
	proxySig := base64.RawURLEncoding.EncodeToString(sig)
	who := ""
	if label != nil {
		who = label(client.RemoteAddr().String())
		if cert != nil && who != "" {
			who += " with certificate " + cert.name()
		}
	}
	// One edit for every CONNECT of this connection: nats-server takes
	// later CONNECTs at any time and merges them into the session, so
	// each one gets the same proxy_sig (over this connection's nonce) and
	// the same identity prefix on its name.
	edit := func(m map[string]json.RawMessage) error {
		setField(m, "proxy_sig", proxySig)
		// auth_token is the bridge's: never a client's word (Assertion).
		dropField(m, "auth_token")
		if assertion != "" {
			setField(m, "auth_token", assertion)
		}
		if who != "" {
			var name string
			_ = json.Unmarshal(m["name"], &name)
			label := who
			if name != "" {
				label += " " + name
			}
			setField(m, "name", label)
		}
		return nil
	}
	out, err := rewriteConnect(line, edit)
	if err != nil {
		return nil, nil, fmt.Errorf("first client line: %w", err)
	}
	if _, err := upstream.Write(out); err != nil {
		return nil, nil, err
	}
	filtered := &clientFilter{Conn: client, r: cr, rewrite: func(l []byte) ([]byte, error) { return rewriteConnect(l, edit) }}
	if denials != nil {
		ip := ""
		if ap, err := netip.ParseAddrPort(client.RemoteAddr().String()); err == nil {
			ip = ap.Addr().String()
		}
		return filtered, &explainConn{Conn: upstream, r: ur, ip: ip, denials: denials}, nil
	}
	return filtered, &bufConn{upstream, ur}, nil
}

// Denials remembers why the control plane refused a caller, so that the
// client sees the reason and not only nats-server's bare "Authorization
// Violation" (an auth callout's error text never reaches the client).
type Denials struct {
	mu sync.Mutex
	m  map[string]denial
}

type denial struct {
	reason string
	at     time.Time
}

func (d *Denials) Add(ip, reason string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.m == nil {
		d.m = map[string]denial{}
	}
	now := time.Now()
	for k, v := range d.m {
		if now.Sub(v.at) > 30*time.Second {
			delete(d.m, k)
		}
	}
	// Protocol-safe: no quotes or line breaks inside -ERR '...'.
	clean := strings.Map(func(r rune) rune {
		if r == '\'' || r == '\r' || r == '\n' {
			return ' '
		}
		return r
	}, reason)
	d.m[ip] = denial{clean, now}
}

func (d *Denials) take(ip string) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	v, ok := d.m[ip]
	if !ok || time.Since(v.at) > 30*time.Second {
		return ""
	}
	delete(d.m, ip)
	return v.reason
}

// explainConn rewrites the first server line after CONNECT when it is the
// bare authorization violation and the control plane left a reason.
type explainConn struct {
	net.Conn
	r       *bufio.Reader
	ip      string
	denials *Denials
	done    bool
	pending []byte
}

const authViolation = "-ERR 'Authorization Violation'\r\n"

func (c *explainConn) Read(p []byte) (int, error) {
	if !c.done {
		c.done = true
		line, err := c.r.ReadSlice('\n')
		if string(line) == authViolation {
			// The callout answers before nats-server writes this line.
			if why := c.denials.take(c.ip); why != "" {
				line = []byte("-ERR 'Authorization Violation: " + why + "'\r\n")
			}
		}
		c.pending = append([]byte(nil), line...)
		if len(c.pending) == 0 && err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return 0, err
		}
	}
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.r.Read(p)
}

func (c *explainConn) CloseWrite() error { return halfClose(c.Conn) }
