package main

import (
	"errors"
	"os/exec"
	"strings"
	"testing"

	"gopro/interop/internal/testpki"
)

// exitCode is the client's exit status, or -1 when it did not exit normally.
func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err == nil {
		return 0
	}
	return -1
}

func tlsServer(t *testing.T, p testpki.PKI, name string, extra ...string) string {
	t.Helper()
	return startServer(t, append([]string{"-quiet", "-tls-cert", p.Pem(name), "-tls-key", p.Key(name)}, extra...)...)
}

// The binaries talk TLS to each other, with every scenario the reference
// server answers, in both server modes.
func TestTLSEndToEnd(t *testing.T) {
	p := testpki.New(t)
	for _, mode := range []string{"-quiet", "-tuned"} {
		t.Run(mode, func(t *testing.T) {
			addr := startServer(t, mode, "-tls-cert", p.Pem("server"), "-tls-key", p.Key("server"))
			for _, sc := range []string{"article", "pipeline", "big"} {
				out, err := runClient(t, addr, sc, "-tls-ca", p.Pem("ca"))
				if err != nil || !strings.Contains(out, "PASS "+sc+"\n") {
					t.Fatalf("client -scenario %s: %v\n%s", sc, err, out)
				}
			}
		})
	}
}

// Each case runs the article scenario; want is "" for PASS, or a piece of
// the reason printed by a client that must fail with status 1.
func TestTLSVerification(t *testing.T) {
	p := testpki.New(t)
	server := tlsServer(t, p, "server")
	mtls := tlsServer(t, p, "server", "-tls-client-ca", p.Pem("ca"))
	expired := tlsServer(t, p, "expired")
	wrongHost := tlsServer(t, p, "wrong-host")
	plain := startServer(t, "-quiet")
	ca := []string{"-tls-ca", p.Pem("ca")}
	with := func(name string) []string {
		return append([]string{"-tls-cert", p.Pem(name), "-tls-key", p.Key(name)}, ca...)
	}
	cases := []struct {
		name  string
		addr  string
		flags []string
		want  string
	}{
		{"by IP SAN", server, ca, ""},
		{"by server name", server, append([]string{"-tls-server-name", "localhost"}, ca...), ""},
		{"wrong CA", server, []string{"-tls-ca", p.Pem("other-ca")}, "certificate signed by unknown authority"},
		{"system roots", server, []string{"-tls"}, "certificate signed by unknown authority"},
		{"server name not in certificate", server, append([]string{"-tls-server-name", "example.invalid"}, ca...), "not example.invalid"},
		{"expired", expired, ca, "expired"},
		{"wrong host", wrongHost, append([]string{"-tls-server-name", "localhost"}, ca...), "not localhost"},
		{"wrong host, its own name", wrongHost, append([]string{"-tls-server-name", "example.invalid"}, ca...), ""},
		{"mTLS", mtls, with("client"), ""},
		{"mTLS without a client certificate", mtls, ca, "certificate required"},
		{"mTLS with another CA's client", mtls, with("other-client"), "certificate required"},
		{"plain client on a TLS port", server, nil, "heartbeat reply"},
		{"TLS client on a plain port", plain, ca, "TLS connect"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, err := runClient(t, tc.addr, "article", tc.flags...)
			if tc.want == "" {
				if err != nil || !strings.Contains(out, "PASS article\n") {
					t.Fatalf("%v\n%s", err, out)
				}
				return
			}
			if code := exitCode(err); code != 1 || !strings.Contains(out, "FAIL article: ") || !strings.Contains(out, tc.want) {
				t.Fatalf("exit status %d, want 1 with %q in the reason\n%s", code, tc.want, out)
			}
			t.Log(strings.TrimSpace(out))
		})
	}
}

// Flags that cannot work together are a usage error, before any connection.
func TestTLSFlagErrors(t *testing.T) {
	p := testpki.New(t)
	for _, flags := range [][]string{
		{"-tls-cert", p.Pem("client"), "-tls-key", p.Key("client")},
		{"-tls-server-name", "localhost"},
		{"-tls-ca", p.Key("ca")},
		{"-tls", "-tls-cert", p.Pem("client")},
	} {
		out, err := runClient(t, "127.0.0.1:1", "article", flags...)
		if code := exitCode(err); code != 2 || !strings.HasPrefix(out, "client: ") {
			t.Errorf("%v: exit status %d, want 2 with a reason\n%s", flags, code, out)
		}
	}
}
