package bridge

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A small PKI for the tests: a CA, server and client certificates.
type testPKI struct {
	caCert *x509.Certificate
	caKey  *ecdsa.PrivateKey
	dir    string
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	p := &testPKI{caCert: c, caKey: key, dir: t.TempDir()}
	p.write(t, "ca.pem", pemOf("CERTIFICATE", der))
	return p
}

func pemOf(kind string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der})
}

func (p *testPKI) write(t *testing.T, name string, b []byte) string {
	t.Helper()
	path := filepath.Join(p.dir, name)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

type certSpec struct {
	cn        string
	serial    int64
	client    bool
	notAfter  time.Time
	dns       []string
	signer    *testPKI // nil: p itself
	noEKUFits bool     // a server-only certificate offered as a client's
}

// issue makes a certificate and key signed by the CA.
func (p *testPKI) issue(t *testing.T, s certSpec) tls.Certificate {
	t.Helper()
	ca := p
	if s.signer != nil {
		ca = s.signer
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if s.notAfter.IsZero() {
		s.notAfter = time.Now().Add(time.Hour)
	}
	eku := x509.ExtKeyUsageServerAuth
	if s.client && !s.noEKUFits {
		eku = x509.ExtKeyUsageClientAuth
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(s.serial), Subject: pkix.Name{CommonName: s.cn},
		NotBefore: time.Now().Add(-2 * time.Hour), NotAfter: s.notAfter,
		ExtKeyUsage: []x509.ExtKeyUsage{eku}, DNSNames: s.dns, KeyUsage: x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.caCert, &key.PublicKey, ca.caKey)
	if err != nil {
		t.Fatal(err)
	}
	kd, _ := x509.MarshalECPrivateKey(key)
	c, err := tls.X509KeyPair(pemOf("CERTIFICATE", der), pemOf("EC PRIVATE KEY", kd))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// serverFiles writes a server certificate and key and returns their paths.
func (p *testPKI) serverFiles(t *testing.T, serial int64) (string, string) {
	c := p.issue(t, certSpec{cn: "nats-1", serial: serial, dns: []string{"nats-1"}})
	kd, _ := x509.MarshalECPrivateKey(c.PrivateKey.(*ecdsa.PrivateKey))
	return p.write(t, "server.pem", pemOf("CERTIFICATE", c.Certificate[0])), p.write(t, "server.key", pemOf("EC PRIVATE KEY", kd))
}

// tlsHandshake runs signClient with a TLS face between a client (which
// runs clientSide on its end of a loopback TCP connection) and a fake
// nats-server. It returns the CONNECT nats-server got ("" if none) and
// signClient's error.
func tlsHandshake(t *testing.T, face *tlsFace, clientSide func(c net.Conn) string) (connect string, clientSaw string, err error) {
	t.Helper()
	ln, lerr := net.Listen("tcp", "127.0.0.1:0")
	if lerr != nil {
		t.Fatal(lerr)
	}
	defer ln.Close()
	s, _ := NewSigner()
	up, upFar := net.Pipe()
	defer up.Close()
	defer upFar.Close()
	_ = upFar.SetDeadline(time.Now().Add(10 * time.Second))
	go func() {
		_, _ = upFar.Write([]byte(`INFO {"server_id":"S","nonce":"abcdefghijk","max_payload":1048576}` + "\r\n"))
	}()
	got := make(chan string, 1)
	go func() {
		l, _ := readLine(bufio.NewReader(upFar))
		got <- string(l)
	}()
	saw := make(chan string, 1)
	go func() {
		c, derr := net.Dial("tcp", ln.Addr().String())
		if derr != nil {
			saw <- derr.Error()
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		saw <- clientSide(c)
	}()
	srv, aerr := ln.Accept()
	if aerr != nil {
		t.Fatal(aerr)
	}
	defer srv.Close()
	_ = srv.SetDeadline(time.Now().Add(10 * time.Second))
	_, _, err = s.signClient(srv, up, &clientFace{tls: face})
	clientSaw = <-saw
	if err == nil {
		connect = <-got
	}
	return connect, clientSaw, err
}

func clientConfig(p *testPKI, certs ...tls.Certificate) *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(p.caCert)
	return &tls.Config{RootCAs: pool, ServerName: "nats-1", Certificates: certs}
}

// natsOverTLS is a client that reads INFO in the clear, upgrades, sends
// CONNECT and returns what it read after CONNECT (an -ERR, or nothing).
func natsOverTLS(cfg *tls.Config, connect string) func(c net.Conn) string {
	return func(c net.Conn) string {
		info, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			return "no INFO: " + err.Error()
		}
		var m map[string]any
		_ = json.Unmarshal([]byte(strings.TrimPrefix(info, "INFO ")), &m)
		if m["tls_required"] != true {
			return "INFO without tls_required: " + info
		}
		tc := tls.Client(c, cfg)
		if err := tc.Handshake(); err != nil {
			return "handshake: " + err.Error()
		}
		return afterConnect(tc, connect)
	}
}

// natsTLSFirst starts TLS at once and reads INFO inside it.
func natsTLSFirst(cfg *tls.Config, connect string) func(c net.Conn) string {
	return func(c net.Conn) string {
		tc := tls.Client(c, cfg)
		if err := tc.Handshake(); err != nil {
			return "handshake: " + err.Error()
		}
		r := bufio.NewReader(tc)
		info, err := r.ReadString('\n')
		if err != nil || !strings.HasPrefix(info, "INFO ") || !strings.Contains(info, `"tls_required":true`) {
			return "no INFO over TLS: " + info
		}
		return afterConnect(tc, connect)
	}
}

func afterConnect(c net.Conn, connect string) string {
	if _, err := c.Write([]byte(connect)); err != nil {
		return "write: " + err.Error()
	}
	_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	line, _ := bufio.NewReader(c).ReadString('\n')
	return line
}

func newFace(t *testing.T, ct *ClientTLS) *tlsFace {
	t.Helper()
	if err := ct.Validate("client"); err != nil {
		t.Fatal(err)
	}
	f, err := newTLSFace(ct, nil, func(err error) { t.Logf("warn: %v", err) })
	if err != nil {
		t.Fatal(err)
	}
	return f
}

const testConnect = `CONNECT {"verbose":false,"name":"app","auth_token":"nats-tsnet-cert:{\"cn\":\"admin\"}"}` + "\r\n"

func TestTLSUpgradeAfterInfoAndTLSFirst(t *testing.T) {
	p := newTestPKI(t)
	cert, key := p.serverFiles(t, 10)
	face := newFace(t, &ClientTLS{CertFile: cert, KeyFile: key})
	for name, client := range map[string]func(net.Conn) string{
		"upgrade":   natsOverTLS(clientConfig(p), testConnect),
		"tls-first": natsTLSFirst(clientConfig(p), testConnect),
	} {
		t.Run(name, func(t *testing.T) {
			connect, saw, err := tlsHandshake(t, face, client)
			if err != nil {
				t.Fatalf("refused: %v (client saw %q)", err, saw)
			}
			if saw != "" {
				t.Errorf("client read %q after CONNECT", saw)
			}
			var m map[string]any
			_ = json.Unmarshal([]byte(strings.TrimPrefix(connect, "CONNECT ")), &m)
			if m["proxy_sig"] == nil || m["name"] != "app" {
				t.Errorf("CONNECT to nats-server = %q", connect)
			}
			// Without a client CA nothing is asserted, and a client's own claim is dropped.
			if _, ok := m["auth_token"]; ok {
				t.Errorf("client's auth_token passed: %q", connect)
			}
		})
	}
}

func TestTLSFacePlainClientIsToldTLSIsRequired(t *testing.T) {
	p := newTestPKI(t)
	cert, key := p.serverFiles(t, 10)
	face := newFace(t, &ClientTLS{CertFile: cert, KeyFile: key})
	_, saw, err := tlsHandshake(t, face, func(c net.Conn) string {
		r := bufio.NewReader(c)
		if _, err := r.ReadString('\n'); err != nil {
			return "no INFO"
		}
		_, _ = c.Write([]byte(`CONNECT {"verbose":false}` + "\r\n"))
		l, _ := r.ReadString('\n')
		return l
	})
	if err == nil {
		t.Fatal("a plain client was let through a TLS face")
	}
	if saw != "-ERR 'Secure Connection - TLS Required'\r\n" {
		t.Errorf("client read %q", saw)
	}
}

func TestTLSFaceRefusesWeakClients(t *testing.T) {
	p := newTestPKI(t)
	cert, key := p.serverFiles(t, 10)
	face := newFace(t, &ClientTLS{CertFile: cert, KeyFile: key})
	weak := map[string]*tls.Config{
		"TLS 1.1":   {MaxVersion: tls.VersionTLS11},
		"CBC suite": {MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}},
	}
	for name, w := range weak {
		cfg := clientConfig(p)
		cfg.MaxVersion, cfg.CipherSuites = w.MaxVersion, w.CipherSuites
		_, saw, err := tlsHandshake(t, face, natsTLSFirst(cfg, testConnect))
		if err == nil || !strings.HasPrefix(saw, "handshake: ") {
			t.Errorf("%s: accepted (err %v, client saw %q)", name, err, saw)
		}
	}
	// minVersion 1.3 refuses 1.2.
	face13 := newFace(t, &ClientTLS{CertFile: cert, KeyFile: key, MinVersion: "1.3"})
	cfg := clientConfig(p)
	cfg.MaxVersion = tls.VersionTLS12
	if _, _, err := tlsHandshake(t, face13, natsTLSFirst(cfg, testConnect)); err == nil {
		t.Error("minVersion 1.3 accepted TLS 1.2")
	}
}

func TestMutualTLSIdentityAndRefusals(t *testing.T) {
	p := newTestPKI(t)
	other := newTestPKI(t)
	cert, key := p.serverFiles(t, 10)
	good := p.issue(t, certSpec{cn: "billing", serial: 20, client: true, dns: []string{"billing.example"}})
	revokedBySerial := p.issue(t, certSpec{cn: "old-serial", serial: 0x2a, client: true})
	revokedByPrint := p.issue(t, certSpec{cn: "old-print", serial: 22, client: true})
	sum := sha256.Sum256(revokedByPrint.Certificate[0])
	fp := hex.EncodeToString(sum[:])
	colons := strings.ToUpper(fp[:2]) + ":" + fp[2:]
	face := newFace(t, &ClientTLS{CertFile: cert, KeyFile: key, ClientCAFile: filepath.Join(p.dir, "ca.pem"), Revoked: []string{"serial:2A", colons}})

	connect, saw, err := tlsHandshake(t, face, natsOverTLS(clientConfig(p, good), testConnect))
	if err != nil || saw != "" {
		t.Fatalf("good certificate refused: %v, client saw %q", err, saw)
	}
	var m map[string]any
	_ = json.Unmarshal([]byte(strings.TrimPrefix(connect, "CONNECT ")), &m)
	tok, _ := m["auth_token"].(string)
	var as Assertion
	if !strings.HasPrefix(tok, assertionPrefix) || json.Unmarshal([]byte(strings.TrimPrefix(tok, assertionPrefix)), &as) != nil || as.Cert == nil {
		t.Fatalf("no certificate assertion in %q", connect)
	}
	if id := as.Cert; as.Face != "" || id.CN != "billing" || len(id.DNS) != 1 || id.DNS[0] != "billing.example" || len(id.SHA256) != 64 {
		t.Errorf("asserted %+v", as)
	}

	refusals := map[string]struct {
		certs []tls.Certificate
		want  string
	}{
		"none":           {nil, "a client certificate is required"},
		"expired":        {[]tls.Certificate{p.issue(t, certSpec{cn: "late", serial: 30, client: true, notAfter: time.Now().Add(-time.Minute)})}, `"late" is expired`},
		"other CA":       {[]tls.Certificate{other.issue(t, certSpec{cn: "stranger", serial: 31, client: true})}, `"stranger" is not signed by the configured client CA`},
		"server only":    {[]tls.Certificate{p.issue(t, certSpec{cn: "srv", serial: 32, client: true, noEKUFits: true})}, `"srv" is not for client authentication`},
		"revoked serial": {[]tls.Certificate{revokedBySerial}, `"old-serial" is revoked by configuration`},
		"revoked print":  {[]tls.Certificate{revokedByPrint}, `"old-print" is revoked by configuration`},
	}
	for name, r := range refusals {
		for mode, client := range map[string]func(net.Conn) string{
			"upgrade":   natsOverTLS(clientConfig(p, r.certs...), testConnect),
			"tls-first": natsTLSFirst(clientConfig(p, r.certs...), testConnect),
		} {
			connect, saw, err := tlsHandshake(t, face, client)
			if code := codeOf(err); code != ErrClientCert || connect != "" {
				t.Errorf("%s (%s): code %q, nats-server got %q", name, mode, code, connect)
			}
			if !strings.HasPrefix(saw, "-ERR 'Authorization Violation: ") || !strings.Contains(saw, r.want) {
				t.Errorf("%s (%s): client read %q, want the reason %q", name, mode, saw, r.want)
			}
		}
	}
}

func TestTLSFilesReloadWithoutRestart(t *testing.T) {
	p := newTestPKI(t)
	cert, key := p.serverFiles(t, 10)
	var warned []error
	face, err := newTLSFace(&ClientTLS{CertFile: cert, KeyFile: key}, nil, func(err error) { warned = append(warned, err) })
	if err != nil {
		t.Fatal(err)
	}
	serial := func() int64 {
		var s int64
		_, _, _ = tlsHandshake(t, face, func(c net.Conn) string {
			tc := tls.Client(c, clientConfig(p))
			if err := tc.Handshake(); err != nil {
				return err.Error()
			}
			s = tc.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
			return afterConnect(tc, testConnect)
		})
		return s
	}
	if s := serial(); s != 10 {
		t.Fatalf("serial %d, want 10", s)
	}
	// Rotated: the next handshake serves the new certificate.
	time.Sleep(10 * time.Millisecond) // a new modification time on coarse clocks
	p.serverFiles(t, 11)
	if s := serial(); s != 11 {
		t.Errorf("after rotation serial %d, want 11", s)
	}
	// A broken key: the previous certificate stays, and the operator is told once.
	time.Sleep(10 * time.Millisecond)
	p.write(t, "server.key", []byte("not a key"))
	if s := serial(); s != 11 {
		t.Errorf("after a broken key serial %d, want 11 still", s)
	}
	serial()
	if len(warned) != 1 {
		t.Errorf("warned %d times, want once: %v", len(warned), warned)
	}
}

func TestClientTLSValidate(t *testing.T) {
	ok := []ClientTLS{
		{CertFile: "c", KeyFile: "k"},
		{Tailnet: true, MinVersion: "1.3"},
		{CertFile: "c", KeyFile: "k", ClientCAFile: "ca", Revoked: []string{"serial:0a", strings.Repeat("ab:", 31) + "ab"}},
	}
	for _, c := range ok {
		if err := c.Validate("client"); err != nil {
			t.Errorf("%+v: %v", c, err)
		}
	}
	bad := []ClientTLS{
		{},
		{CertFile: "c"},
		{CertFile: "c", KeyFile: "k", Tailnet: true},
		{CertFile: "c", KeyFile: "k", MinVersion: "1.1"},
		{CertFile: "c", KeyFile: "k", MinVersion: "1.0"},
		{CertFile: "c", KeyFile: "k", Revoked: []string{"serial:0a"}},
		{CertFile: "c", KeyFile: "k", ClientCAFile: "ca", Revoked: []string{"bob"}},
	}
	for _, c := range bad {
		if codeOf(c.Validate("client")) != ErrBadArgs {
			t.Errorf("%+v validated", c)
		}
	}
	// Unreadable files are refused when the listener opens, with their code.
	if _, err := newTLSFace(&ClientTLS{CertFile: "/nonexistent.pem", KeyFile: "/nonexistent.key"}, nil, nil); codeOf(err) != ErrTLS {
		t.Errorf("missing files: %v", err)
	}
	// TLS belongs to the client face.
	a := ListenArgs{Name: "route", Port: 6222, Target: "127.0.0.1:16222", TLS: &ClientTLS{Tailnet: true}}
	if codeOf(a.Validate()) != ErrBadArgs {
		t.Error("tls without signClients validated")
	}
}
