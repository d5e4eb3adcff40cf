package bridge

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// wsSetup serves a WebSocket face on loopback whose connections go through
// signClient to a fake nats-server; each CONNECT it gets arrives on the channel.
func wsSetup(t *testing.T, face *WebSocketFace) (string, chan string) {
	t.Helper()
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := newWSListener(tcp, face, nil, func() []string { return []string{"nats-1.tail.example", "nats-1"} }, slog.New(slog.NewTextHandler(io.Discard, nil)), newRefusalLog(slog.New(slog.NewTextHandler(io.Discard, nil)), refusalLogEvery))
	t.Cleanup(func() { ln.Close() })
	return wsServe(t, ln, nil)
}

// wsServe runs accepted WebSocket connections through signClient as the
// client face does: wrapped by the guard (callerConn), with sec for WSS.
func wsServe(t *testing.T, ln net.Listener, sec *tlsFace) (string, chan string) {
	t.Helper()
	s, _ := NewSigner()
	connects := make(chan string, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, upFar := net.Pipe()
			go func() {
				_, _ = upFar.Write([]byte(`INFO {"server_id":"S","nonce":"abcdefghijk","connect_urls":["nats-2:4222"],"max_payload":1048576}` + "\r\n"))
				l, _ := readLine(bufio.NewReader(upFar))
				connects <- string(l)
			}()
			go func() { _, _, _ = s.signClient(&callerConn{Conn: c}, up, &clientFace{tls: sec}) }()
		}
	}()
	return ln.Addr().String(), connects
}

func wsDial(t *testing.T, addr string, h http.Header) (net.Conn, *http.Response, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	c, resp, err := websocket.Dial(ctx, "ws://"+addr, &websocket.DialOptions{HTTPHeader: h})
	if err != nil {
		return nil, resp, err
	}
	return websocket.NetConn(context.Background(), c, websocket.MessageBinary), resp, nil
}

func TestWebSocketFaceSignsAndKeepsTCPURLsFromClients(t *testing.T) {
	addr, connects := wsSetup(t, &WebSocketFace{})
	c, _, err := wsDial(t, addr, nil) // not a browser: no Origin
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	info, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(strings.TrimPrefix(info, "INFO ")), &m); err != nil {
		t.Fatalf("INFO %q: %v", info, err)
	}
	if _, ok := m["connect_urls"]; ok {
		t.Errorf("a WebSocket client was given TCP URLs: %s", info)
	}
	if _, err := c.Write([]byte(`CONNECT {"verbose":false,"proxy_sig":"forged"}` + "\r\n")); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-connects:
		if !strings.Contains(got, `"proxy_sig"`) || strings.Contains(got, "forged") {
			t.Errorf("CONNECT to nats-server: %q", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no CONNECT reached nats-server")
	}
}

func TestWebSocketFaceOriginsAndHosts(t *testing.T) {
	addr, _ := wsSetup(t, &WebSocketFace{Origins: []string{"app.example", "*.apps.example:8443"}})
	_, port, _ := net.SplitHostPort(addr)
	cases := []struct {
		name, origin, host string
		status             int // 0: upgraded
	}{
		{"same origin", "http://" + addr, "", 0},
		{"an allowed origin", "https://app.example", "", 0},
		{"an allowed pattern", "https://x.apps.example:8443", "", 0},
		{"a foreign page", "https://evil.example", "", http.StatusForbidden},
		{"the node's name", "http://nats-1:" + port, "nats-1:" + port, 0},
		{"a rebound name", "http://evil.example:" + port, "evil.example:" + port, http.StatusMisdirectedRequest},
	}
	for _, c := range cases {
		h := http.Header{"Origin": {c.origin}}
		if c.host != "" {
			h.Set("Host", c.host)
		}
		conn, resp, err := wsDialHost(t, addr, c.host, h)
		if c.status == 0 {
			if err != nil {
				t.Errorf("%s: refused: %v", c.name, err)
				continue
			}
			conn.Close()
			continue
		}
		if err == nil {
			conn.Close()
			t.Errorf("%s: upgraded", c.name)
		} else if resp == nil || resp.StatusCode != c.status {
			t.Errorf("%s: %v, want HTTP %d", c.name, err, c.status)
		}
	}
}

// wsDialHost dials addr but asks for host (a name the test cannot resolve).
func wsDialHost(t *testing.T, addr, host string, h http.Header) (net.Conn, *http.Response, error) {
	if host == "" {
		return wsDial(t, addr, h)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}}}
	c, resp, err := websocket.Dial(ctx, "ws://"+host, &websocket.DialOptions{HTTPHeader: h, HTTPClient: hc})
	if err != nil {
		return nil, resp, err
	}
	return websocket.NetConn(context.Background(), c, websocket.MessageBinary), resp, nil
}

func TestWebSocketFaceValidate(t *testing.T) {
	for _, o := range []string{"*", "", "a/b", "[x"} {
		if codeOf((&WebSocketFace{Origins: []string{o}}).Validate("ws")) != ErrBadArgs {
			t.Errorf("origin %q validated", o)
		}
	}
	a := ListenArgs{Name: "ws", Port: 8080, Target: "127.0.0.1:14222", WebSocket: &WebSocketFace{}}
	if codeOf(a.Validate()) != ErrBadArgs {
		t.Error("webSocket without signClients validated")
	}
}

func TestWebSocketOverTLSWithClientCertificates(t *testing.T) {
	p := newTestPKI(t)
	cert, key := p.serverFiles(t, 10)
	sec := newFace(t, &ClientTLS{CertFile: cert, KeyFile: key, ClientCAFile: filepath.Join(p.dir, "ca.pem")})
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := newWSListener(tcp, &WebSocketFace{}, sec, func() []string { return nil }, slog.New(slog.NewTextHandler(io.Discard, nil)), newRefusalLog(slog.New(slog.NewTextHandler(io.Discard, nil)), refusalLogEvery))
	t.Cleanup(func() { ln.Close() })
	addr, connects := wsServe(t, ln, sec)
	dial := func(certs ...tls.Certificate) (net.Conn, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		t.Cleanup(cancel)
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: clientConfig(p, certs...)}}
		c, _, err := websocket.Dial(ctx, "wss://"+addr, &websocket.DialOptions{HTTPClient: hc})
		if err != nil {
			return nil, err
		}
		return websocket.NetConn(context.Background(), c, websocket.MessageBinary), nil
	}
	hello := func(c net.Conn) (info, after string) {
		r := bufio.NewReader(c)
		info, _ = r.ReadString('\n')
		_, _ = c.Write([]byte(`CONNECT {"verbose":false}` + "\r\n"))
		_ = c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		after, _ = r.ReadString('\n')
		return info, after
	}
	// A certificate from the CA: INFO in WebSocket messages (no TLS inside), no TCP URLs, the identity asserted.
	good := p.issue(t, certSpec{cn: "browser-app", serial: 40, client: true})
	c, err := dial(good)
	if err != nil {
		t.Fatal(err)
	}
	info, after := hello(c)
	c.Close()
	if !strings.HasPrefix(info, "INFO ") || strings.Contains(info, "connect_urls") || after != "" {
		t.Fatalf("INFO %q, then %q", info, after)
	}
	select {
	case got := <-connects:
		if !strings.Contains(got, `browser-app`) {
			t.Errorf("no certificate assertion in %q", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no CONNECT reached nats-server")
	}
	// None: refused with the reason, in a WebSocket message.
	c, err = dial()
	if err != nil {
		t.Fatal(err)
	}
	_, after = hello(c)
	c.Close()
	if !strings.Contains(after, "a client certificate is required") {
		t.Errorf("without a certificate the client read %q", after)
	}
}
