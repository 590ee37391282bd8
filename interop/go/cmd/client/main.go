// Command client is the article's reference client turned into a checker: it
// runs one or more scenarios against a GoPro server and verifies every reply
// byte for byte. Each scenario uses its own connection with a 10 s deadline.
// On success it prints "PASS <scenario>" per scenario and exits 0; on any
// mismatch, decode error or timeout it explains on stderr and exits 1.
//
// With -tls or -tls-ca every connection is TLS 1.2 or 1.3 (package tlsconf),
// verified against the given root CAs and, unless -tls-server-name says
// otherwise, the host of -addr; -tls-cert and -tls-key present a client
// certificate. A failed handshake fails the scenario like any other error.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"gopro/interop/protocol"
	"gopro/interop/tlsconf"
)

// scenarioTimeout bounds a whole scenario, so a server that never answers
// (e.g. the reference server given LOGIN) fails the check instead of hanging.
// A variable so that tests can prove the timeout path without waiting 10 s.
var scenarioTimeout = 10 * time.Second

type scenario func(conn net.Conn, out io.Writer) error

var scenarios = map[string]scenario{
	"article":  scenarioArticle,
	"pipeline": scenarioPipeline,
	"big":      scenarioBig,
	"login":    scenarioLogin,
}

// allOrder is the order of -scenario all.
var allOrder = []string{"article", "pipeline", "big", "login"}

func main() {
	addr := flag.String("addr", "127.0.0.1:8888", "server address")
	name := flag.String("scenario", "article", "article, pipeline, big, login or all")
	var tlsFlags tlsconf.Client
	flag.BoolVar(&tlsFlags.Enabled, "tls", false, "connect with TLS, trusting the system's root CAs")
	flag.StringVar(&tlsFlags.CA, "tls-ca", "", "PEM root CA file to trust instead; implies -tls")
	flag.StringVar(&tlsFlags.Cert, "tls-cert", "", "PEM client certificate (chain), with -tls-key")
	flag.StringVar(&tlsFlags.Key, "tls-key", "", "PEM private key of -tls-cert")
	flag.StringVar(&tlsFlags.ServerName, "tls-server-name", "", "name to verify the server's certificate against and send as SNI (default: the host of -addr)")
	flag.Parse()

	tlsConfig, err := tlsFlags.Config()
	if err != nil {
		fmt.Fprintf(os.Stderr, "client: %v\n", err)
		os.Exit(2)
	}

	var names []string
	if *name == "all" {
		names = allOrder
	} else if _, ok := scenarios[*name]; ok {
		names = []string{*name}
	} else {
		fmt.Fprintf(os.Stderr, "unknown scenario %q (want article, pipeline, big, login or all)\n", *name)
		os.Exit(2)
	}

	for _, n := range names {
		if err := runScenario(n, *addr, tlsConfig, os.Stdout); err != nil {
			fmt.Fprintf(os.Stderr, "FAIL %s: %v\n", n, err)
			os.Exit(1)
		}
		fmt.Printf("PASS %s\n", n)
	}
}

// runScenario dials addr, over TLS when tlsConfig is not nil, and runs the
// named scenario on a fresh connection.
func runScenario(name, addr string, tlsConfig *tls.Config, out io.Writer) error {
	run, ok := scenarios[name]
	if !ok {
		return fmt.Errorf("unknown scenario %q", name)
	}
	conn, err := dial(addr, tlsConfig)
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(scenarioTimeout)); err != nil {
		return err
	}
	err = run(conn, out)
	if isTimeout(err) {
		return fmt.Errorf("timed out (%v per scenario): %w", scenarioTimeout, err)
	}
	return err
}

// dial connects within scenarioTimeout and, for TLS, completes the handshake
// before returning, so that a certificate the client refuses is reported as
// such rather than as a failed first read.
func dial(addr string, tlsConfig *tls.Config) (net.Conn, error) {
	nd := &net.Dialer{Timeout: scenarioTimeout}
	if tlsConfig == nil {
		conn, err := nd.Dial("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("connect to %s: %w", addr, err)
		}
		return conn, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), scenarioTimeout)
	defer cancel()
	conn, err := (&tls.Dialer{NetDialer: nd, Config: tlsConfig}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("TLS connect to %s: %w", addr, err)
	}
	return conn, nil
}

func isTimeout(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// scenarioArticle is the article's client: a heartbeat, then a message, with
// the article's output, plus the checks the article leaves to the reader.
func scenarioArticle(conn net.Conn, out io.Writer) error {
	// 1. Send Heartbeat
	fmt.Fprintln(out, "Sending Heartbeat...")
	if err := protocol.NewPacket(protocol.CmdHeartbeat, nil).Encode(conn); err != nil {
		return fmt.Errorf("send heartbeat: %w", err)
	}
	resp, err := expect(conn, "heartbeat reply", protocol.CmdHeartbeat, nil)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "Server Response Command: %d\n", resp.Header.Command)

	// 2. Send Message
	msg := "Hello TCP World!"
	fmt.Fprintf(out, "Sending Message: %s\n", msg)
	if err := protocol.NewPacket(protocol.CmdMessage, []byte(msg)).Encode(conn); err != nil {
		return fmt.Errorf("send message: %w", err)
	}
	resp, err = expect(conn, "message reply", protocol.CmdMessage, []byte("Server says: "+msg))
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "Server Echo: %s\n", string(resp.Body))
	return nil
}

// scenarioPipeline sends 200 requests before reading any reply, all through
// one flush, to check that the server handles a burst of frames arriving
// together and answers them in order (SPEC §4). Heartbeats carry bodies so
// that a reordered or duplicated reply cannot pass unnoticed.
func scenarioPipeline(conn net.Conn, out io.Writer) error {
	const n = 100
	type want struct {
		cmd  uint8
		body []byte
	}
	var wants []want

	w := bufio.NewWriter(conn)
	for i := 0; i < n; i++ {
		msg := []byte(fmt.Sprintf("msg-%d", i))
		hb := []byte(fmt.Sprintf("hb-%d", i))
		if err := protocol.NewPacket(protocol.CmdMessage, msg).Encode(w); err != nil {
			return fmt.Errorf("send msg-%d: %w", i, err)
		}
		if err := protocol.NewPacket(protocol.CmdHeartbeat, hb).Encode(w); err != nil {
			return fmt.Errorf("send hb-%d: %w", i, err)
		}
		wants = append(wants,
			want{protocol.CmdMessage, append([]byte("Server says: "), msg...)},
			want{protocol.CmdHeartbeat, hb})
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("send pipeline: %w", err)
	}

	r := bufio.NewReader(conn)
	for i, wt := range wants {
		if _, err := expect(r, fmt.Sprintf("reply %d of %d", i+1, len(wants)), wt.cmd, wt.body); err != nil {
			return err
		}
	}
	fmt.Fprintf(out, "pipeline: %d requests, %d replies in order\n", len(wants), len(wants))
	return nil
}

// scenarioBig checks the edges of the 10 MiB limit (SPEC §2): the largest
// accepted body echoed by HEARTBEAT, and the largest MESSAGE whose reply
// ("Server says: " + body) still fits within the limit.
func scenarioBig(conn net.Conn, out io.Writer) error {
	limit := int(protocol.MaxBody)
	body := pattern(limit)
	if err := protocol.NewPacket(protocol.CmdHeartbeat, body).Encode(conn); err != nil {
		return fmt.Errorf("send %d-byte heartbeat: %w", len(body), err)
	}
	if _, err := expect(conn, fmt.Sprintf("%d-byte heartbeat reply", len(body)), protocol.CmdHeartbeat, body); err != nil {
		return err
	}

	prefix := []byte("Server says: ")
	body = pattern(limit - len(prefix))
	if err := protocol.NewPacket(protocol.CmdMessage, body).Encode(conn); err != nil {
		return fmt.Errorf("send %d-byte message: %w", len(body), err)
	}
	if _, err := expect(conn, fmt.Sprintf("%d-byte message reply", len(body)), protocol.CmdMessage, append(prefix, body...)); err != nil {
		return err
	}
	fmt.Fprintf(out, "big: %d-byte heartbeat and %d-byte message echoed\n", limit, len(body))
	return nil
}

// scenarioLogin checks the SPEC extension: LOGIN answered with "OK". The
// reference server sends nothing for LOGIN, so this one fails against it by
// timing out; it is meant for servers that implement the extension.
func scenarioLogin(conn net.Conn, out io.Writer) error {
	if err := protocol.NewPacket(protocol.CmdLogin, []byte("user:secret")).Encode(conn); err != nil {
		return fmt.Errorf("send login: %w", err)
	}
	if _, err := expect(conn, "login reply", protocol.CmdLogin, []byte("OK")); err != nil {
		return err
	}
	if err := protocol.NewPacket(protocol.CmdHeartbeat, nil).Encode(conn); err != nil {
		return fmt.Errorf("send heartbeat: %w", err)
	}
	if _, err := expect(conn, "heartbeat reply after login", protocol.CmdHeartbeat, nil); err != nil {
		return err
	}
	fmt.Fprintln(out, "login: OK, heartbeat after login echoed")
	return nil
}

// pattern is n bytes where byte i is i % 251: a prime period, so an offset
// error of any size short of a multiple of 251 changes the bytes.
func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i % 251)
	}
	return b
}

// expect decodes one frame and checks its version, command and body.
func expect(r io.Reader, what string, cmd uint8, body []byte) (*protocol.Packet, error) {
	p, err := protocol.Decode(r)
	if err != nil {
		if err == io.EOF {
			return nil, fmt.Errorf("%s: server closed the connection instead of replying", what)
		}
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if p.Header.Version != protocol.Version {
		return p, fmt.Errorf("%s: version %d, want %d", what, p.Header.Version, protocol.Version)
	}
	if p.Header.Command != cmd {
		got := protocol.CommandName(p.Header.Command)
		if p.Header.Command == protocol.CmdError || p.Header.Command == protocol.CmdGoaway {
			got += fmt.Sprintf(" %q", preview(p.Body))
		}
		return p, fmt.Errorf("%s: got %s, want %s", what, got, protocol.CommandName(cmd))
	}
	if !bytes.Equal(p.Body, body) {
		return p, fmt.Errorf("%s: body mismatch: %s", what, describeDiff(p.Body, body))
	}
	return p, nil
}

func describeDiff(got, want []byte) string {
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	return fmt.Sprintf("got %d bytes %q, want %d bytes %q (first difference at offset %d)",
		len(got), preview(got), len(want), preview(want), i)
}

// preview keeps diagnostics readable when bodies are megabytes long.
func preview(b []byte) string {
	const max = 64
	if len(b) <= max {
		return string(b)
	}
	return string(b[:max]) + strings.Repeat(".", 3)
}
