// Package testpki makes throw-away certificates for the TLS tests, with the
// same names and roles as scripts/tls-certs.sh makes with openssl, so that
// `go test` needs nothing but Go. Only tests import it.
package testpki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// PKI is a set of PEM files in Dir. Each entity has NAME.pem (certificate)
// and NAME.key (PKCS#8 key):
//
//	ca            the CA that signs everything below except other-client
//	other-ca      an unrelated CA, for wrong-CA tests
//	server        localhost, SANs DNS:localhost and IP:127.0.0.1
//	expired       like server, but its validity ended a day ago
//	wrong-host    SAN DNS:example.invalid only
//	client        CN=device-42, a client certificate signed by ca
//	other-client  a client certificate signed by other-ca
type PKI struct{ Dir string }

// Pem is the certificate file of name.
func (p PKI) Pem(name string) string { return filepath.Join(p.Dir, name+".pem") }

// Key is the private key file of name.
func (p PKI) Key(name string) string { return filepath.Join(p.Dir, name+".key") }

type entity struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// New writes a fresh PKI into a temporary directory removed after the test.
func New(t testing.TB) PKI {
	t.Helper()
	p := PKI{Dir: t.TempDir()}
	now := time.Now()
	valid := [2]time.Time{now.Add(-time.Hour), now.Add(24 * time.Hour)}

	ca := p.issue(t, "ca", nil, &x509.Certificate{
		Subject:               pkix.Name{CommonName: "gopro test CA"},
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}, valid)
	other := p.issue(t, "other-ca", nil, &x509.Certificate{
		Subject:               pkix.Name{CommonName: "gopro unrelated test CA"},
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}, valid)

	server := func(cn string, dns []string, ips []net.IP) *x509.Certificate {
		return &x509.Certificate{
			Subject:     pkix.Name{CommonName: cn},
			DNSNames:    dns,
			IPAddresses: ips,
			KeyUsage:    x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		}
	}
	loopback := []net.IP{net.IPv4(127, 0, 0, 1)}
	p.issue(t, "server", ca, server("localhost", []string{"localhost"}, loopback), valid)
	p.issue(t, "expired", ca, server("localhost", []string{"localhost"}, loopback),
		[2]time.Time{now.Add(-48 * time.Hour), now.Add(-24 * time.Hour)})
	p.issue(t, "wrong-host", ca, server("example.invalid", []string{"example.invalid"}, nil), valid)

	client := func() *x509.Certificate {
		return &x509.Certificate{
			Subject:     pkix.Name{CommonName: "device-42"},
			DNSNames:    []string{"device-42.example"},
			URIs:        []*url.URL{{Scheme: "spiffe", Host: "gopro.test", Path: "/device/42"}},
			KeyUsage:    x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		}
	}
	p.issue(t, "client", ca, client(), valid)
	p.issue(t, "other-client", other, client(), valid)
	return p
}

// issue makes a key and a certificate for tmpl, signed by parent (self-signed
// when parent is nil), and writes both files.
func (p PKI) issue(t testing.TB, name string, parent *entity, tmpl *x509.Certificate, valid [2]time.Time) *entity {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber = serial
	tmpl.NotBefore, tmpl.NotAfter = valid[0], valid[1]
	signer, signerKey := tmpl, key
	if parent != nil {
		signer, signerKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	write(t, p.Pem(name), "CERTIFICATE", der)
	write(t, p.Key(name), "PRIVATE KEY", pkcs8)
	return &entity{cert: cert, key: key}
}

func write(t testing.TB, file, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}
