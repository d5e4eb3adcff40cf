package bridge

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// The WebSocket face: browsers (and wsconnect clients) speak NATS in
// WebSocket binary messages. nats-server's own websocket listener reads no
// PROXY header and would need proxy_sig injected into masked frames, so the
// bridge terminates WebSocket here and speaks plain NATS to the loopback
// client port behind it, signing like the TCP face. Everything after the
// upgrade (the guard, the signature, quotas, names) is the client face's.

// WebSocketFace is ListenArgs.WebSocket.
type WebSocketFace struct {
	// Origins a browser page may connect from besides the node itself:
	// host or host:port patterns (path.Match, case-insensitive). Empty:
	// only pages served from the address they connect to. Clients that
	// send no Origin (not browsers) are not asked.
	Origins []string `json:"origins,omitempty"`
}

func (w *WebSocketFace) Validate(name string) error {
	for _, o := range w.Origins {
		if _, err := filepath.Match(o, ""); err != nil || o == "" || strings.Contains(o, "/") {
			return coded(ErrBadArgs, "listen %q: websocket origin %q is not a host pattern", name, o)
		}
		if o == "*" {
			// A wildcard would let any web page a tailnet user visits
			// connect with that user's identity.
			return coded(ErrBadArgs, "listen %q: websocket origin \"*\" would admit every web page; name the origins", name)
		}
	}
	return nil
}

// wsMaxMessage bounds one WebSocket message: a NATS message up to
// nats-server's largest max_payload and its headers fit; nothing larger is
// buffered.
const wsMaxMessage = 64 << 20

// wsListener yields one net.Conn per upgraded WebSocket, carrying the NATS
// stream in binary messages, to a Forwarder as if it were a TCP listener.
type wsListener struct {
	inner   net.Listener
	refusal *refusalLog
	face    *WebSocketFace
	hosts   func() []string // the node's own names, for the Host check
	srv     *http.Server
	conns   chan net.Conn
	closed  chan struct{}
	closing sync.Once
}

// newWSListener serves WebSocket upgrades on ln, over TLS when sec is set
// (WSS; a client certificate, when the face asks for one, is checked by
// signClient like on the TCP face).
func newWSListener(ln net.Listener, face *WebSocketFace, sec *tlsFace, hosts func() []string, logger *slog.Logger, counted *refusalLog) *wsListener {
	l := &wsListener{inner: ln, face: face, hosts: hosts, conns: make(chan net.Conn), closed: make(chan struct{}), refusal: counted}
	l.srv = &http.Server{
		Handler:           l,
		ReadHeaderTimeout: 10 * time.Second,
		// Handshake noise from scanners belongs at debug level.
		ErrorLog: log.New(io.Discard, "", 0),
	}
	serveOn := ln
	if sec != nil {
		serveOn = tls.NewListener(ln, sec.cfg)
	}
	go func() {
		if err := l.srv.Serve(serveOn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Warn("websocket face stopped", "err", err)
		}
	}()
	return l
}

func (l *wsListener) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !l.hostAllowed(r.Host) {
		// A name that is not the node's: DNS rebinding, a page pointing
		// its own name at the tailnet address.
		l.refused(r, "Host "+r.Host+" is not this node's name or address")
		http.Error(w, "Host "+r.Host+" is not this node", http.StatusMisdirectedRequest)
		return
	}
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{OriginPatterns: l.face.Origins})
	if err != nil {
		// Accept answered: 403 for a foreign origin, 426 for a plain request.
		l.refused(r, err.Error())
		return
	}
	c.SetReadLimit(wsMaxMessage)
	nc := websocket.NetConn(context.Background(), c, websocket.MessageBinary)
	wc := &wsConn{Conn: nc}
	if r.TLS != nil {
		wc.certs = r.TLS.PeerCertificates
	}
	select {
	case l.conns <- wc:
	case <-l.closed:
		_ = nc.Close()
	}
}

// refused logs a refused upgrade, once per caller and period: the page's
// origin is what an operator adding a web app needs to see.
func (l *wsListener) refused(r *http.Request, reason string) {
	caller := r.RemoteAddr
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		caller = ap.Addr().String()
	}
	l.refusal.refused("ip:"+caller, ErrWebSocketRefused, "websocket upgrade refused", "from", r.RemoteAddr, "origin", r.Header.Get("Origin"), "reason", reason)
}

// hostAllowed: the Host a client asked for is an address (no DNS name can
// be rebound to it), one of the node's names, or an allowed origin's.
func (l *wsListener) hostAllowed(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(strings.Trim(host, "[]")), ".")
	if _, err := netip.ParseAddr(host); err == nil || host == "localhost" {
		return true
	}
	for _, n := range l.hosts() {
		if strings.EqualFold(strings.TrimSuffix(n, "."), host) {
			return true
		}
	}
	for _, o := range l.face.Origins {
		oh := o
		if h, _, err := net.SplitHostPort(o); err == nil {
			oh = h
		}
		if ok, _ := filepath.Match(strings.ToLower(oh), host); ok {
			return true
		}
	}
	return false
}

func (l *wsListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *wsListener) Close() error {
	l.closing.Do(func() {
		close(l.closed)
		_ = l.srv.Close() // closes the tailnet listener too
	})
	return nil
}

func (l *wsListener) Addr() net.Addr { return l.inner.Addr() }

// wsConn is one WebSocket's NATS stream, with the client certificates of
// its TLS handshake (WSS), which happened in the HTTP server.
type wsConn struct {
	net.Conn
	certs []*x509.Certificate
}

// asWebSocket finds the WebSocket under the wrappers the client face puts
// around a connection (the guard's callerConn).
func asWebSocket(c net.Conn) (*wsConn, bool) {
	for {
		switch x := c.(type) {
		case *wsConn:
			return x, true
		case interface{ Unwrap() net.Conn }:
			c = x.Unwrap()
		default:
			return nil, false
		}
	}
}

// wsInfo keeps nats-server's TCP client URLs from a WebSocket client: it
// could not use them. It gets none, and reconnects to the servers it was
// given.
func wsInfo(info []byte) ([]byte, error) {
	return editInfo(info, func(m map[string]jsonRaw) {
		dropField(m, "connect_urls")
		dropField(m, "ws_connect_urls")
	})
}
