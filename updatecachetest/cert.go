package updatecachetest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Certificate is a self-signed certificate and its key, made for tests:
// for a TLS server (the names and addresses given) or for signing tokens.
type Certificate struct {
	CertPEM, KeyPEM []byte
	der             []byte
	key             *ecdsa.PrivateKey
}

// NewCertificate makes a self-signed ECDSA P-256 certificate, valid for a
// day, for the given host names and IP addresses (none for a signing-only
// certificate). It is its own CA, so trusting it (a certs.d ca.crt, a
// registry's rootcertbundle) is enough.
func NewCertificate(hosts ...string) (*Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("updatecachetest: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return nil, fmt.Errorf("updatecachetest: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "updatecachetest"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("updatecachetest: %w", err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("updatecachetest: %w", err)
	}
	return &Certificate{
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
		der:     der,
		key:     key,
	}, nil
}

// Trust makes containers/image trust c for the registry at host (host:port)
// by writing it as ca.crt in certsDir/host, as the certs.d directory of a
// SystemContext (DockerPerHostCertDirPath) wants it.
func (c *Certificate) Trust(certsDir, host string) error {
	dir := filepath.Join(certsDir, host)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("updatecachetest: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ca.crt"), c.CertPEM, 0o600); err != nil {
		return fmt.Errorf("updatecachetest: %w", err)
	}
	return nil
}
