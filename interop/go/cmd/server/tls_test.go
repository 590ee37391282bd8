package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"gopro/interop/internal/testpki"
	"gopro/interop/protocol"
	"gopro/interop/tlsconf"
)

func startTLS(t *testing.T, tuned bool, flags tlsconf.Server) *Server {
	t.Helper()
	cfg, err := flags.Config()
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer("127.0.0.1:0", tuned, true)
	s.TLS = cfg
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		select {
		case <-s.quit:
		default:
			s.Stop(time.Second)
		}
	})
	return s
}

// dialTLS connects and completes the handshake; in TLS 1.3 a refused client
// certificate only shows on the first read.
func dialTLS(t *testing.T, s *Server, flags tlsconf.Client) *tls.Conn {
	t.Helper()
	cfg, err := flags.Config()
	if err != nil {
		t.Fatal(err)
	}
	return dialTLSConfig(t, s, cfg)
}

func dialTLSConfig(t *testing.T, s *Server, cfg *tls.Config) *tls.Conn {
	t.Helper()
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: cfg}
	c, err := d.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	t.Cleanup(func() { c.Close() })
	return c.(*tls.Conn)
}

// The article's behaviour is unchanged inside TLS, in both modes: echo,
// pipelining, a partial frame after a whole one, and closing on an unknown
// command.
func TestTLSBehaviour(t *testing.T) {
	p := testpki.New(t)
	forBoth(t, func(t *testing.T, tuned bool) {
		s := startTLS(t, tuned, tlsconf.Server{Cert: p.Pem("server"), Key: p.Key("server")})
		c := dialTLS(t, s, tlsconf.Client{CA: p.Pem("ca")})
		if v := c.ConnectionState().Version; v != tls.VersionTLS13 {
			t.Errorf("negotiated %s, want TLS 1.3 by default", tls.VersionName(v))
		}
		c.Write(frame(t, protocol.CmdLogin, "user:secret"))
		c.Write(frame(t, protocol.CmdHeartbeat, "beat"))
		read(t, c, protocol.CmdHeartbeat, "beat")

		var burst []byte
		for i := 0; i < 300; i++ {
			burst = append(burst, frame(t, protocol.CmdMessage, strings.Repeat("x", i))...)
		}
		next := frame(t, protocol.CmdMessage, "tail")
		go c.Write(append(burst, next[:5]...))
		for i := 0; i < 300; i++ {
			read(t, c, protocol.CmdMessage, "Server says: "+strings.Repeat("x", i))
		}
		c.Write(next[5:])
		read(t, c, protocol.CmdMessage, "Server says: tail")

		c.Write(frame(t, 9, "?"))
		readEOF(t, c)
	})
}

func TestTLS12(t *testing.T) {
	p := testpki.New(t)
	s := startTLS(t, false, tlsconf.Server{Cert: p.Pem("server"), Key: p.Key("server")})
	c := dialTLSConfig(t, s, &tls.Config{RootCAs: pool(t, p.Pem("ca")), MaxVersion: tls.VersionTLS12})
	if v := c.ConnectionState().Version; v != tls.VersionTLS12 {
		t.Fatalf("negotiated %s", tls.VersionName(v))
	}
	c.Write(frame(t, protocol.CmdHeartbeat, ""))
	read(t, c, protocol.CmdHeartbeat, "")
}

func pool(t *testing.T, file string) *x509.CertPool {
	t.Helper()
	p, err := tlsconf.CertPool(file)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// With a client CA, only clients with a certificate from that CA are
// served, and refused handshakes leave the server serving the next client.
func TestMutualTLS(t *testing.T) {
	p := testpki.New(t)
	forBoth(t, func(t *testing.T, tuned bool) {
		s := startTLS(t, tuned, tlsconf.Server{Cert: p.Pem("server"), Key: p.Key("server"), ClientCA: p.Pem("ca")})
		trust := tlsconf.Client{CA: p.Pem("ca")}

		c := dialTLS(t, s, trust)
		c.Write(frame(t, protocol.CmdHeartbeat, ""))
		if _, err := protocol.Decode(c); err == nil || !strings.Contains(err.Error(), "certificate required") {
			t.Fatalf("without a client certificate: err %v, want the server to require one", err)
		}

		// Go's client would not offer a certificate from a CA the server did
		// not name; sending it anyway is what other clients (rustls) do.
		other, err := tls.LoadX509KeyPair(p.Pem("other-client"), p.Key("other-client"))
		if err != nil {
			t.Fatal(err)
		}
		cfg, _ := trust.Config()
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &other, nil }
		c = dialTLSConfig(t, s, cfg)
		c.Write(frame(t, protocol.CmdHeartbeat, ""))
		if _, err := protocol.Decode(c); err == nil || !strings.Contains(err.Error(), "unknown certificate authority") {
			t.Fatalf("with another CA's client certificate: err %v, want it refused", err)
		}

		trust.Cert, trust.Key = p.Pem("client"), p.Key("client")
		c = dialTLS(t, s, trust)
		c.Write(frame(t, protocol.CmdMessage, "from device-42"))
		read(t, c, protocol.CmdMessage, "Server says: from device-42")
	})
}

// A plain GoPro client gets no GoPro reply from a TLS server, just a closed
// connection (possibly after a TLS alert record).
func TestPlainClientOnTLSPort(t *testing.T) {
	p := testpki.New(t)
	s := startTLS(t, false, tlsconf.Server{Cert: p.Pem("server"), Key: p.Key("server")})
	c := dial(t, s)
	c.Write(frame(t, protocol.CmdHeartbeat, ""))
	got, err := io.ReadAll(c)
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("read: %v (got %x)", err, got)
	}
	if bytes.HasPrefix(got, []byte{0x47, 0x4f}) {
		t.Fatalf("a plain client got a GoPro reply: %x", got)
	}
}

// Stop still returns promptly with an idle TLS client, which sees the
// connection end.
func TestTLSStop(t *testing.T) {
	p := testpki.New(t)
	forBoth(t, func(t *testing.T, tuned bool) {
		s := startTLS(t, tuned, tlsconf.Server{Cert: p.Pem("server"), Key: p.Key("server")})
		c := dialTLS(t, s, tlsconf.Client{CA: p.Pem("ca")})
		c.Write(frame(t, protocol.CmdHeartbeat, ""))
		read(t, c, protocol.CmdHeartbeat, "")
		began := time.Now()
		s.Stop(5 * time.Second)
		if d := time.Since(began); d > 2*time.Second {
			t.Fatalf("Stop took %v with one idle TLS client", d)
		}
		readEOF(t, c)
	})
}
