package tlsconf

import (
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gopro/interop/internal/testpki"
)

func TestFlagCombinations(t *testing.T) {
	p := testpki.New(t)
	bad := map[string]interface{ Config() (*tls.Config, error) }{
		"server cert without key":  Server{Cert: p.Pem("server")},
		"server key without cert":  Server{Key: p.Key("server")},
		"client CA without a pair": Server{ClientCA: p.Pem("ca")},
		"server key of another":    Server{Cert: p.Pem("server"), Key: p.Key("client")},
		"missing cert file":        Server{Cert: filepath.Join(p.Dir, "nope.pem"), Key: p.Key("server")},
		"client cert without TLS":  Client{Cert: p.Pem("client"), Key: p.Key("client")},
		"server name without TLS":  Client{ServerName: "localhost"},
		"client cert without key":  Client{CA: p.Pem("ca"), Cert: p.Pem("client")},
		"client key of another":    Client{CA: p.Pem("ca"), Cert: p.Pem("client"), Key: p.Key("server")},
		"missing CA file":          Client{CA: filepath.Join(p.Dir, "nope.pem")},
		"CA file that is a key":    Client{CA: p.Key("ca")},
		"client CA file is a key":  Server{Cert: p.Pem("server"), Key: p.Key("server"), ClientCA: p.Key("ca")},
	}
	for name, flags := range bad {
		t.Run(name, func(t *testing.T) {
			cfg, err := flags.Config()
			if err == nil {
				t.Fatalf("accepted, config %v", cfg)
			}
			t.Log(err)
		})
	}

	for name, flags := range map[string]interface{ Config() (*tls.Config, error) }{
		"server": Server{}, "client": Client{},
	} {
		if cfg, err := flags.Config(); cfg != nil || err != nil {
			t.Errorf("%s without TLS flags: config %v, err %v; want plain TCP", name, cfg, err)
		}
	}
}

func TestEmptyCAFileNamed(t *testing.T) {
	empty := filepath.Join(t.TempDir(), "empty.pem")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := CertPool(empty)
	if err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Fatalf("err = %v", err)
	}
}

// handshake runs both configurations against each other over an in-memory
// pipe and returns the client's and the server's errors.
func handshake(t *testing.T, client, server *tls.Config) (*tls.ConnectionState, error, error) {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	deadline := time.Now().Add(5 * time.Second)
	a.SetDeadline(deadline)
	b.SetDeadline(deadline)
	sc := tls.Server(b, server)
	serverErr := make(chan error, 1)
	go func() {
		err := sc.Handshake()
		if err == nil {
			// In TLS 1.3 the client finishes before the server has checked
			// its certificate; one byte each way makes both sides agree.
			_, err = sc.Write([]byte{1})
		}
		serverErr <- err
		if err != nil {
			sc.Close()
		}
	}()
	cc := tls.Client(a, client)
	err := cc.Handshake()
	if err == nil {
		_, err = cc.Read(make([]byte, 1))
	}
	state := cc.ConnectionState()
	return &state, err, <-serverErr
}

func configs(t *testing.T, p testpki.PKI, s Server, c Client) (*tls.Config, *tls.Config) {
	t.Helper()
	sc, err := s.Config()
	if err != nil {
		t.Fatal(err)
	}
	cc, err := c.Config()
	if err != nil {
		t.Fatal(err)
	}
	return sc, cc
}

func TestVersions(t *testing.T) {
	p := testpki.New(t)
	sc, cc := configs(t, p, Server{Cert: p.Pem("server"), Key: p.Key("server")}, Client{CA: p.Pem("ca"), ServerName: "localhost"})
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		c := cc.Clone()
		c.MinVersion, c.MaxVersion = v, v
		state, cerr, serr := handshake(t, c, sc)
		if cerr != nil || serr != nil {
			t.Fatalf("%s: client %v, server %v", tls.VersionName(v), cerr, serr)
		}
		if state.Version != v {
			t.Fatalf("negotiated %s, want %s", tls.VersionName(state.Version), tls.VersionName(v))
		}
	}
	c := cc.Clone()
	c.MinVersion, c.MaxVersion = tls.VersionTLS11, tls.VersionTLS11
	if _, cerr, serr := handshake(t, c, sc); cerr == nil || serr == nil {
		t.Fatalf("TLS 1.1 accepted: client %v, server %v", cerr, serr)
	} else {
		t.Log(serr)
	}
}

func TestVerification(t *testing.T) {
	p := testpki.New(t)
	plain := Server{Cert: p.Pem("server"), Key: p.Key("server")}
	mtls := Server{Cert: p.Pem("server"), Key: p.Key("server"), ClientCA: p.Pem("ca")}
	trust := Client{CA: p.Pem("ca"), ServerName: "localhost"}
	withCert := func(c Client, name string) Client {
		c.Cert, c.Key = p.Pem(name), p.Key(name)
		return c
	}
	cases := []struct {
		name   string
		server Server
		client Client
		// wantErr is a substring of the client's or the server's error, or
		// "" for success.
		wantErr string
	}{
		{"server verified", plain, trust, ""},
		{"by IP SAN", plain, Client{CA: p.Pem("ca"), ServerName: "127.0.0.1"}, ""},
		{"wrong CA", plain, Client{CA: p.Pem("other-ca"), ServerName: "localhost"}, "unknown authority"},
		{"expired", Server{Cert: p.Pem("expired"), Key: p.Key("expired")}, trust, "expired"},
		{"wrong host", Server{Cert: p.Pem("wrong-host"), Key: p.Key("wrong-host")}, trust, "not localhost"},
		{"mTLS", mtls, withCert(trust, "client"), ""},
		{"mTLS without a client certificate", mtls, trust, "certificate"},
		// Go's client sends no certificate when it was not issued by one of
		// the CAs the server names in its request, so the server sees none.
		{"mTLS with another CA's client", mtls, withCert(trust, "other-client"), "client didn't provide a certificate"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sc, cc := configs(t, p, tc.server, tc.client)
			_, cerr, serr := handshake(t, cc, sc)
			if tc.wantErr == "" {
				if cerr != nil || serr != nil {
					t.Fatalf("client %v, server %v", cerr, serr)
				}
				return
			}
			if cerr == nil && serr == nil {
				t.Fatal("handshake succeeded")
			}
			if !strings.Contains(errString(cerr)+" "+errString(serr), tc.wantErr) {
				t.Fatalf("client %v, server %v; want %q in one of them", cerr, serr, tc.wantErr)
			}
		})
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
