package bridge

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strings"
	"time"
)

// TLS on the client face. nats-server's trusted-proxy signature (proxy_sig)
// travels inside CONNECT, so the bridge cannot pass a client's TLS through
// to nats-server: it terminates TLS itself, here, and speaks plain NATS on
// loopback behind it. Off by default: WireGuard already encrypts every
// tailnet connection; TLS is for policies and clients that insist on it,
// and for client certificates as an identity (mTLS).

// ClientTLS is the client face's TLS (ListenArgs.TLS).
type ClientTLS struct {
	// CertFile and KeyFile: a PEM certificate chain and its key, read
	// again whenever either file changes (no restart to rotate them).
	CertFile string `json:"certFile,omitempty"`
	KeyFile  string `json:"keyFile,omitempty"`
	// Tailnet: the node's own certificate for its MagicDNS name, from the
	// control server (Tailscale's HTTPS certificates; headscale has none).
	Tailnet bool `json:"tailnet,omitempty"`
	// MinVersion: "1.2" (the default) or "1.3". Nothing older is offered.
	MinVersion string `json:"minVersion,omitempty"`
	// ClientCAFile, when set, makes a client certificate that chains to
	// this PEM bundle a condition of every connection (mTLS). Read again
	// whenever it changes.
	ClientCAFile string `json:"clientCaFile,omitempty"`
	// Revoked lists client certificates refused although they chain to the
	// CA: SHA-256 fingerprints of the certificate (64 hex digits, colons
	// allowed) or serial numbers ("serial:" and hex digits).
	Revoked []string `json:"revoked,omitempty"`
}

var (
	fingerprintRe = regexp.MustCompile(`^[0-9a-f]{64}$`)
	serialRe      = regexp.MustCompile(`^serial:[0-9a-f]{1,40}$`)
)

func (t *ClientTLS) Validate(name string) error {
	files := t.CertFile != "" || t.KeyFile != ""
	switch {
	case files && t.Tailnet:
		return coded(ErrBadArgs, "listen %q: tls takes certFile and keyFile or tailnet, not both", name)
	case !files && !t.Tailnet:
		return coded(ErrBadArgs, "listen %q: tls needs certFile and keyFile, or tailnet", name)
	case files && (t.CertFile == "" || t.KeyFile == ""):
		return coded(ErrBadArgs, "listen %q: tls needs both certFile and keyFile", name)
	}
	if _, err := tlsVersion(t.MinVersion); err != nil {
		return coded(ErrBadArgs, "listen %q: %v", name, err)
	}
	for _, r := range t.Revoked {
		if k := revokedKey(r); !fingerprintRe.MatchString(k) && !serialRe.MatchString(k) {
			return coded(ErrBadArgs, "listen %q: revoked entry %q is neither a SHA-256 fingerprint nor serial:<hex>", name, r)
		}
	}
	if len(t.Revoked) > 0 && t.ClientCAFile == "" {
		return coded(ErrBadArgs, "listen %q: revoked needs clientCaFile", name)
	}
	return nil
}

func tlsVersion(v string) (uint16, error) {
	switch v {
	case "", "1.2":
		return tls.VersionTLS12, nil
	case "1.3":
		return tls.VersionTLS13, nil
	}
	return 0, fmt.Errorf("tls minVersion %q: only 1.2 and 1.3 are offered", v)
}

// revokedKey canonicalises a revoked entry as clientIdentity looks it up:
// lower case; a fingerprint without colons; a serial without leading zeros.
func revokedKey(s string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	if hexDigits, ok := strings.CutPrefix(s, "serial:"); ok {
		if t := strings.TrimLeft(hexDigits, "0"); t != "" || hexDigits == "" {
			return "serial:" + t
		}
		return "serial:0"
	}
	return strings.ReplaceAll(s, ":", "")
}

// tls12Suites: forward secrecy and AEAD only. TLS 1.3's suites are all of
// that kind and Go does not let them be chosen.
var tls12Suites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// tlsFirstWait: how long the face waits for a TLS-first client's hello
// before it sends INFO in the clear (nats-server's handshake_first "auto"
// waits 50 ms too). It starts only after the upstream INFO arrived, by
// which time a TLS-first client's hello, sent with its first packet, is
// almost always here.
const tlsFirstWait = 50 * time.Millisecond

// tlsHandshakeTimeout bounds a handshake: a silent caller holds no slot.
const tlsHandshakeTimeout = 10 * time.Second

// tlsFace is one listener's TLS: the server config (certificates and CAs
// read again when their files change) and the client-certificate check.
type tlsFace struct {
	cfg     *tls.Config
	ca      *reloading[*x509.CertPool]
	revoked map[string]bool
}

// newTLSFace loads the certificate (and CA) once, so that a listener with
// unreadable files is refused when it is opened, not at the first client.
// getCert serves the tailnet's own certificate (Tailnet mode).
// warn hears about files that changed but do not load (the old ones stay).
func newTLSFace(t *ClientTLS, getCert func(*tls.ClientHelloInfo) (*tls.Certificate, error), warn func(error)) (*tlsFace, error) {
	min, _ := tlsVersion(t.MinVersion)
	f := &tlsFace{revoked: map[string]bool{}}
	for _, r := range t.Revoked {
		f.revoked[revokedKey(r)] = true
	}
	f.cfg = &tls.Config{MinVersion: min, CipherSuites: tls12Suites}
	if t.Tailnet {
		f.cfg.GetCertificate = getCert
	} else {
		cert := newReloading([]string{t.CertFile, t.KeyFile}, func() (*tls.Certificate, error) {
			c, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
			return &c, err
		}, func(err error) {
			warn(fmt.Errorf("tls certificate %s / key %s changed but does not load, still serving the previous one: %w", t.CertFile, t.KeyFile, err))
		})
		if _, err := cert.get(); err != nil {
			return nil, coded(ErrTLS, "tls certificate %s / key %s: %v", t.CertFile, t.KeyFile, err)
		}
		f.cfg.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return cert.get() }
	}
	if t.ClientCAFile != "" {
		f.ca = newReloading([]string{t.ClientCAFile}, func() (*x509.CertPool, error) {
			pem, err := readFileLimited(t.ClientCAFile, 1<<20)
			if err != nil {
				return nil, err
			}
			p := x509.NewCertPool()
			if !p.AppendCertsFromPEM(pem) {
				return nil, errors.New("no PEM certificate in it")
			}
			return p, nil
		}, func(err error) {
			warn(fmt.Errorf("tls client CA %s changed but does not load, still using the previous one: %w", t.ClientCAFile, err))
		})
		if _, err := f.ca.get(); err != nil {
			return nil, coded(ErrTLS, "tls client CA %s: %v", t.ClientCAFile, err)
		}
		// Asked for, verified after the handshake (clientIdentity): a
		// client whose certificate is missing, expired or from another CA
		// then reads why in a NATS error line, not a bare TLS alert.
		f.cfg.ClientAuth = tls.RequestClientCert
	}
	return f, nil
}

// advertise marks INFO as requiring TLS (and a client certificate): a
// client that wants TLS refuses an INFO without tls_required (nats.go's
// ErrSecureConnWanted), and one without TLS learns it must use it.
func (f *tlsFace) advertise(info []byte) ([]byte, error) {
	return editInfo(info, func(m map[string]jsonRaw) {
		setField(m, "tls_required", true)
		dropField(m, "tls_available")
		if f.ca != nil {
			setField(m, "tls_verify", true)
		}
	})
}

type jsonRaw = json.RawMessage

// editInfo rewrites the fields of nats-server's "INFO {json}\r\n" line.
func editInfo(info []byte, edit func(map[string]jsonRaw)) ([]byte, error) {
	body, ok := bytes.CutPrefix(info, []byte("INFO "))
	if !ok {
		return nil, errors.New("server's first line is not INFO")
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(bytes.TrimSpace(body), &m); err != nil || m == nil {
		return nil, errors.New("server INFO is not a JSON object")
	}
	edit(m)
	out, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	return append(append([]byte("INFO "), out...), '\r', '\n'), nil
}

// present gives the client the server's INFO over TLS and returns the
// connection to speak NATS on. Both ways of starting TLS are accepted:
// TLS first (the client's hello arrives before INFO: nats.go
// TLSHandshakeFirst, nats.js handshakeFirst, natscli --tlsfirst), and
// the upgrade after an INFO sent in the clear. A client that answers INFO
// in the clear is told TLS is required and refused.
func (f *tlsFace) present(c net.Conn, info []byte) (net.Conn, error) {
	info, err := f.advertise(info)
	if err != nil {
		return nil, err
	}
	pc := &peekConn{Conn: c, r: bufio.NewReaderSize(c, 4096)}
	first, err := pc.peekWithin(tlsFirstWait)
	if err != nil {
		return nil, err
	}
	tlsFirst := first == recordTypeHandshake
	if !tlsFirst {
		if _, err := c.Write(info); err != nil {
			return nil, err
		}
		if first, err = pc.peekWithin(tlsHandshakeTimeout); err != nil {
			return nil, fmt.Errorf("no TLS handshake after INFO: %w", err)
		}
		if first != recordTypeHandshake {
			_, _ = c.Write([]byte("-ERR 'Secure Connection - TLS Required'\r\n"))
			return nil, errors.New("client spoke NATS in the clear on a TLS face")
		}
	}
	tc := tls.Server(pc, f.cfg)
	ctx, cancel := context.WithTimeout(context.Background(), tlsHandshakeTimeout)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, fmt.Errorf("TLS handshake: %w", err)
	}
	if tlsFirst {
		// TLS first: INFO goes inside TLS.
		if _, err := tc.Write(info); err != nil {
			return nil, err
		}
	}
	return tc, nil
}

// recordTypeHandshake is the first byte of every TLS ClientHello record;
// a NATS client's first line starts with a letter.
const recordTypeHandshake = 0x16

// peekConn reads through a buffer so the face can look at the client's
// first byte without consuming it.
type peekConn struct {
	net.Conn
	r *bufio.Reader
}

func (p *peekConn) Read(b []byte) (int, error) { return p.r.Read(b) }
func (p *peekConn) CloseWrite() error          { return halfClose(p.Conn) }

// peekWithin returns the next byte without consuming it, or 0 when none
// arrived within d (the caller is waiting for INFO).
func (p *peekConn) peekWithin(d time.Duration) (byte, error) {
	if p.r.Buffered() > 0 {
		b, _ := p.r.Peek(1)
		return b[0], nil
	}
	_ = p.Conn.SetReadDeadline(time.Now().Add(d))
	defer p.Conn.SetReadDeadline(time.Now().Add(tlsHandshakeTimeout))
	b, err := p.r.Peek(1)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return b[0], nil
}

// CertIdentity is what a verified client certificate says about its
// holder: the subject's common name and the subject alternative names.
// The bridge hands it to nats-server's auth callout (Assertion).
type CertIdentity struct {
	CN     string   `json:"cn,omitempty"`
	DNS    []string `json:"dns,omitempty"`
	Email  []string `json:"email,omitempty"`
	URI    []string `json:"uri,omitempty"`
	SHA256 string   `json:"sha256"`
}

// name is how logs and /connz show the certificate: its common name, or
// its fingerprint when it has none (as auth.rules would name it).
func (c *CertIdentity) name() string {
	if c.CN != "" {
		return "CN=" + c.CN
	}
	return "SHA256=" + c.SHA256
}

// clientIdentity checks the client certificate of a finished handshake
// against the CA and the revoked list. Without a CA there is nothing to
// check (nil, ""); otherwise the identity, or why the client is refused.
func (f *tlsFace) clientIdentity(c net.Conn, now time.Time) (*CertIdentity, string) {
	if f == nil || f.ca == nil {
		return nil, ""
	}
	var certs []*x509.Certificate
	if ws, ok := asWebSocket(c); ok {
		certs = ws.certs // WSS: the HTTP server did the handshake
	} else if tc, ok := c.(*tls.Conn); ok {
		certs = tc.ConnectionState().PeerCertificates
	} else {
		return nil, "no TLS connection"
	}
	if len(certs) == 0 {
		return nil, "a client certificate is required"
	}
	leaf := certs[0]
	pool, err := f.ca.get()
	if err != nil {
		return nil, "the client CA bundle cannot be read"
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	_, err = leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	if err != nil {
		return nil, certRefusal(leaf, err)
	}
	fp := fingerprint(leaf.Raw)
	if f.revoked[fp] || f.revoked["serial:"+strings.ToLower(leaf.SerialNumber.Text(16))] {
		return nil, fmt.Sprintf("client certificate %q is revoked by configuration", leaf.Subject.CommonName)
	}
	id := &CertIdentity{CN: leaf.Subject.CommonName, DNS: leaf.DNSNames, Email: leaf.EmailAddresses, SHA256: fp}
	for _, u := range leaf.URIs {
		id.URI = append(id.URI, u.String())
	}
	return id, ""
}

// fingerprint is a certificate's SHA-256 in lower-case hex, as tls.revoked names it.
func fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// certRefusal says in a line why a certificate did not verify.
func certRefusal(leaf *x509.Certificate, err error) string {
	name := leaf.Subject.CommonName
	var inv x509.CertificateInvalidError
	var ua x509.UnknownAuthorityError
	switch {
	case errors.As(err, &inv) && inv.Reason == x509.Expired:
		return fmt.Sprintf("client certificate %q is expired or not yet valid (valid %s to %s)", name,
			leaf.NotBefore.UTC().Format(time.RFC3339), leaf.NotAfter.UTC().Format(time.RFC3339))
	case errors.As(err, &inv) && inv.Reason == x509.IncompatibleUsage:
		return fmt.Sprintf("client certificate %q is not for client authentication", name)
	case errors.As(err, &ua):
		return fmt.Sprintf("client certificate %q is not signed by the configured client CA", name)
	}
	return fmt.Sprintf("client certificate %q does not verify: %v", name, err)
}

// assertionPrefix marks the CONNECT auth_token the bridge writes to tell
// the auth callout what it knows and the callout cannot see: a verified
// client certificate, and the local face a caller came through. auth_token
// is the bridge's on every client face: whatever a client put there is
// dropped, so the callout can trust a token with this prefix (and
// nats-server still checks proxy_sig after the callout's answer).
const assertionPrefix = "nats-tsnet:"

// Assertion is what the bridge vouches for about one connection.
type Assertion struct {
	// Face names the local face (ListenArgs.Local) the caller came through;
	// empty on the tailnet.
	Face string        `json:"face,omitempty"`
	Cert *CertIdentity `json:"cert,omitempty"`
}

// token is the auth_token for a, or "" when there is nothing to assert.
func (a Assertion) token() string {
	if a.Face == "" && a.Cert == nil {
		return ""
	}
	b, _ := json.Marshal(a)
	return assertionPrefix + string(b)
}
