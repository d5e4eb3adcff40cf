package bridge

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// A small private CA for the client face's TLS: `nats-tsnet-bridge cert`
// makes it on first use and issues server and client certificates from it.
// It is for dev, tests and people without a PKI of their own; crypto/x509
// does it in a page, so no openssl is needed on the host.

// CertRequest asks for one certificate from the CA in Dir.
type CertRequest struct {
	Dir    string        // holds ca.pem and ca.key (made when absent) and the new pair
	Name   string        // files <Name>.pem and <Name>.key
	CN     string        // subject common name
	DNS    []string      // subject alternative names
	IPs    []net.IP      // subject alternative IP addresses
	Client bool          // for client authentication (mTLS); else a server certificate
	Valid  time.Duration // from now; negative makes a certificate that has already expired
}

// CertFiles is where the CA and the new pair were written.
type CertFiles struct {
	CA   string `json:"ca"`
	Cert string `json:"cert"`
	Key  string `json:"key"`
	// Serial and SHA256 name the certificate in tls.revoked.
	Serial string `json:"serial"`
	SHA256 string `json:"sha256"`
}

// IssueCert makes (or reuses) the CA and issues one certificate from it.
func IssueCert(r CertRequest) (*CertFiles, error) {
	if r.Dir == "" || r.Name == "" || r.CN == "" {
		return nil, errors.New("cert needs a directory, a name and a common name")
	}
	if filepath.Base(r.Name) != r.Name || r.Name == "ca" {
		return nil, fmt.Errorf("cert name %q must be a plain file name other than ca", r.Name)
	}
	if err := os.MkdirAll(r.Dir, 0o700); err != nil {
		return nil, err
	}
	ca, caKey, err := loadOrMakeCA(r.Dir)
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 96))
	if err != nil {
		return nil, err
	}
	now := time.Now()
	notBefore, notAfter := now.Add(-5*time.Minute), now.Add(r.Valid)
	if r.Valid < 0 {
		notBefore = notAfter.Add(-24 * time.Hour) // expired, and never valid now
	}
	eku := x509.ExtKeyUsageServerAuth
	if r.Client {
		eku = x509.ExtKeyUsageClientAuth
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: r.CN},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{eku},
		DNSNames:     r.DNS,
		IPAddresses:  r.IPs,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	out := &CertFiles{
		CA:     filepath.Join(r.Dir, "ca.pem"),
		Cert:   filepath.Join(r.Dir, r.Name+".pem"),
		Key:    filepath.Join(r.Dir, r.Name+".key"),
		Serial: "serial:" + serial.Text(16),
		SHA256: fingerprint(der),
	}
	if err := writePEMKey(out.Key, key); err != nil {
		return nil, err
	}
	return out, writeFileAtomic(out.Cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

func loadOrMakeCA(dir string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	certPath, keyPath := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca.key")
	if cb, err := os.ReadFile(certPath); err == nil {
		kb, err := os.ReadFile(keyPath)
		if err != nil {
			return nil, nil, fmt.Errorf("CA key: %w", err)
		}
		cp, kp := pemBlock(cb, "CERTIFICATE"), pemBlock(kb, "EC PRIVATE KEY")
		if cp == nil || kp == nil {
			return nil, nil, fmt.Errorf("%s or %s is not the PEM this command writes", certPath, keyPath)
		}
		ca, err := x509.ParseCertificate(cp)
		if err != nil {
			return nil, nil, err
		}
		key, err := x509.ParseECPrivateKey(kp)
		return ca, key, err
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 96))
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "nats-tsnet CA " + filepath.Base(dir)},
		NotBefore:             time.Now().Add(-5 * time.Minute),
		NotAfter:              time.Now().AddDate(10, 0, 0),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	if err := writePEMKey(keyPath, key); err != nil {
		return nil, nil, err
	}
	if err := writeFileAtomic(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return nil, nil, err
	}
	ca, err := x509.ParseCertificate(der)
	return ca, key, err
}

func pemBlock(b []byte, kind string) []byte {
	for {
		var p *pem.Block
		p, b = pem.Decode(b)
		if p == nil {
			return nil
		}
		if p.Type == kind {
			return p.Bytes
		}
	}
}

func writePEMKey(path string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	return writeFileAtomic(path, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600)
}

// writeFileAtomic writes via a temporary file and a rename, so that a
// face reloading the file never reads half of it.
func writeFileAtomic(path string, b []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
