// Package tlsconf turns the TLS flags of the interop server and client into
// crypto/tls configurations. The article's peer speaks plain TCP; TLS is an
// optional wrapper around the same byte stream, so that implementations with
// their own TLS stack (rustls in gopro) can be checked against a TLS peer
// that is not theirs. Nothing about the protocol changes under TLS.
//
// Both sides allow TLS 1.2 and 1.3, and nothing older.
package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// MinVersion is the oldest protocol version either side accepts.
const MinVersion = tls.VersionTLS12

// Server holds the server's TLS flags: -tls-cert, -tls-key, -tls-client-ca.
type Server struct {
	// Cert is a PEM file with the server's certificate, optionally followed
	// by the intermediates to send with it.
	Cert string
	// Key is the PEM private key of Cert (PKCS#8, PKCS#1 or SEC1).
	Key string
	// ClientCA, when set, is a PEM file of the CAs that client certificates
	// must chain to; a client without a valid certificate is refused.
	ClientCA string
}

// Config returns the server's TLS configuration, or nil when no TLS flag
// was given (plain TCP, as in the article).
func (s Server) Config() (*tls.Config, error) {
	if s.Cert == "" && s.Key == "" && s.ClientCA == "" {
		return nil, nil
	}
	if s.Cert == "" || s.Key == "" {
		return nil, errors.New("-tls-cert and -tls-key must be given together (and -tls-client-ca needs both)")
	}
	pair, err := tls.LoadX509KeyPair(s.Cert, s.Key)
	if err != nil {
		return nil, fmt.Errorf("server certificate %s with key %s: %w", s.Cert, s.Key, err)
	}
	cfg := &tls.Config{
		MinVersion:   MinVersion,
		Certificates: []tls.Certificate{pair},
	}
	if s.ClientCA != "" {
		pool, err := CertPool(s.ClientCA)
		if err != nil {
			return nil, err
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// Client holds the client's TLS flags: -tls, -tls-ca, -tls-cert, -tls-key,
// -tls-server-name.
type Client struct {
	// Enabled turns TLS on with the system's root CAs.
	Enabled bool
	// CA is a PEM file of root CAs to trust instead of the system's; giving
	// it turns TLS on.
	CA string
	// Cert and Key are the client certificate for servers that ask for one.
	Cert, Key string
	// ServerName is the name checked against the server's certificate and
	// sent as SNI; empty means the host part of the dialed address (an IP
	// address is then checked against the certificate's IP SANs).
	ServerName string
}

// On reports whether the flags ask for TLS.
func (c Client) On() bool { return c.Enabled || c.CA != "" }

// Config returns the client's TLS configuration, or nil for plain TCP.
func (c Client) Config() (*tls.Config, error) {
	if !c.On() {
		if c.Cert != "" || c.Key != "" || c.ServerName != "" {
			return nil, errors.New("-tls-cert, -tls-key and -tls-server-name need -tls or -tls-ca")
		}
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: MinVersion, ServerName: c.ServerName}
	if c.CA != "" {
		pool, err := CertPool(c.CA)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	if c.Cert != "" || c.Key != "" {
		if c.Cert == "" || c.Key == "" {
			return nil, errors.New("-tls-cert and -tls-key must be given together")
		}
		pair, err := tls.LoadX509KeyPair(c.Cert, c.Key)
		if err != nil {
			return nil, fmt.Errorf("client certificate %s with key %s: %w", c.Cert, c.Key, err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// CertPool reads every certificate of a PEM file into a pool. A file without
// a single certificate is an error: an empty pool would trust nothing and
// make every handshake fail with a far less helpful message.
func CertPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("CA file %s: no PEM certificate in it", file)
	}
	return pool, nil
}
