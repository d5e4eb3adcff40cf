package bridge

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

func TestIssueCertMakesTheCAOnceAndCertificatesThatVerify(t *testing.T) {
	dir := t.TempDir()
	srv, err := IssueCert(CertRequest{Dir: dir, Name: "server", CN: "nats-1", DNS: []string{"nats-1"}, IPs: []net.IP{net.ParseIP("127.0.0.1")}, Valid: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	caPEM, _ := os.ReadFile(srv.CA)
	cli, err := IssueCert(CertRequest{Dir: dir, Name: "billing", CN: "billing", Client: true, Valid: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := os.ReadFile(cli.CA); string(again) != string(caPEM) {
		t.Fatal("the second certificate made a new CA")
	}
	if fi, _ := os.Stat(cli.Key); fi.Mode().Perm() != 0o600 {
		t.Errorf("key mode %v", fi.Mode().Perm())
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	for _, c := range []struct {
		files *CertFiles
		usage x509.ExtKeyUsage
		name  string
	}{{srv, x509.ExtKeyUsageServerAuth, "127.0.0.1"}, {cli, x509.ExtKeyUsageClientAuth, ""}} {
		pair, err := tls.LoadX509KeyPair(c.files.Cert, c.files.Key)
		if err != nil {
			t.Fatal(err)
		}
		leaf, _ := x509.ParseCertificate(pair.Certificate[0])
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: c.name, KeyUsages: []x509.ExtKeyUsage{c.usage}}); err != nil {
			t.Errorf("%s: %v", c.files.Cert, err)
		}
		if c.files.SHA256 != fingerprint(leaf.Raw) || c.files.Serial != "serial:"+leaf.SerialNumber.Text(16) {
			t.Errorf("%s: names %s %s", c.files.Cert, c.files.SHA256, c.files.Serial)
		}
	}
	// The files serve a TLS face and its client check as they are.
	face, err := newTLSFace(&ClientTLS{CertFile: srv.Cert, KeyFile: srv.Key, ClientCAFile: srv.CA}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	expired, err := IssueCert(CertRequest{Dir: dir, Name: "late", CN: "late", Client: true, Valid: -time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		files *CertFiles
		want  string
	}{{cli, ""}, {expired, "is expired"}} {
		pair, _ := tls.LoadX509KeyPair(c.files.Cert, c.files.Key)
		cfg := &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", Certificates: []tls.Certificate{pair}}
		_, saw, err := tlsHandshake(t, face, natsTLSFirst(cfg, testConnect))
		if (c.want == "") != (err == nil) || !strings.Contains(saw, c.want) {
			t.Errorf("%s: err %v, client saw %q", c.files.Cert, err, saw)
		}
	}
}

func TestIssueCertRefusesBadNames(t *testing.T) {
	for _, name := range []string{"", "ca", "../x", "a/b"} {
		if _, err := IssueCert(CertRequest{Dir: t.TempDir(), Name: name, CN: "x", Valid: time.Hour}); err == nil {
			t.Errorf("name %q accepted", name)
		}
	}
}
