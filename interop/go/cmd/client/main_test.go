package main

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"gopro/interop/protocol"
)

// bin holds the server and client built from this module, once for the run.
var bin string

func TestMain(m *testing.M) {
	code := func() int {
		dir, err := os.MkdirTemp("", "gopro-interop-")
		if err != nil {
			panic(err)
		}
		defer os.RemoveAll(dir)
		gobin, err := exec.LookPath("go")
		if err == nil {
			cmd := exec.Command(gobin, "build", "-o", dir+string(filepath.Separator), "./cmd/...")
			cmd.Dir = filepath.Join("..", "..")
			cmd.Stderr = os.Stderr
			if err = cmd.Run(); err == nil {
				bin = dir
			}
		}
		if bin == "" {
			os.Stderr.WriteString("building the binaries failed; end-to-end tests will be skipped\n")
		}
		return m.Run()
	}()
	os.Exit(code)
}

// startServer runs the server binary on a free port and returns the address
// it announced on stdout.
func startServer(t *testing.T, args ...string) string {
	t.Helper()
	if bin == "" {
		t.Skip("binaries not built")
	}
	cmd := exec.Command(filepath.Join(bin, "server"), append([]string{"-addr", "127.0.0.1:0"}, args...)...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	lines := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		lines <- line
		io.Copy(io.Discard, stdout)
	}()
	var line string
	select {
	case line = <-lines:
	case <-time.After(5 * time.Second):
		cmd.Process.Kill()
		t.Fatal("server did not announce its address")
	}
	addr, ok := strings.CutPrefix(strings.TrimSuffix(line, "\n"), "listening on ")
	if !ok {
		cmd.Process.Kill()
		t.Fatalf("server's first stdout line is %q, want \"listening on HOST:PORT\"", line)
	}
	if _, port, err := net.SplitHostPort(addr); err != nil || port == "0" {
		cmd.Process.Kill()
		t.Fatalf("announced address %q is not a bound HOST:PORT", addr)
	}

	t.Cleanup(func() {
		// SIGTERM must lead to a graceful stop and a zero exit.
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("server exit after SIGTERM: %v\n%s", err, stderr.String())
			}
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			t.Errorf("server did not stop on SIGTERM\n%s", stderr.String())
		}
	})
	return addr
}

func runClient(t *testing.T, addr, scenario string, flags ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(filepath.Join(bin, "client"), append([]string{"-addr", addr, "-scenario", scenario}, flags...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String() + stderr.String(), err
}

// The client binary's scenarios pass against the server binary in both its
// modes. LOGIN is left out: the reference server does not answer it.
func TestEndToEnd(t *testing.T) {
	for _, mode := range [][]string{{"-quiet"}, {"-tuned"}, nil} {
		t.Run(strings.Join(append([]string{"server"}, mode...), " "), func(t *testing.T) {
			addr := startServer(t, mode...)
			for _, sc := range []string{"article", "pipeline", "big"} {
				out, err := runClient(t, addr, sc)
				if err != nil {
					t.Fatalf("client -scenario %s: %v\n%s", sc, err, out)
				}
				if !strings.Contains(out, "PASS "+sc+"\n") {
					t.Fatalf("client -scenario %s: no PASS line\n%s", sc, out)
				}
			}
		})
	}
}

func TestArticleOutput(t *testing.T) {
	addr := startServer(t, "-quiet")
	out, err := runClient(t, addr, "article")
	if err != nil {
		t.Fatal(err, out)
	}
	want := "Sending Heartbeat...\nServer Response Command: 0\nSending Message: Hello TCP World!\n" +
		"Server Echo: Server says: Hello TCP World!\nPASS article\n"
	if out != want {
		t.Fatalf("output:\n%s\nwant:\n%s", out, want)
	}
}

// fakeServer answers every frame it reads with reply(frame), or nothing when
// reply returns nil.
func fakeServer(t *testing.T, reply func(*protocol.Packet) *protocol.Packet) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				for {
					p, err := protocol.Decode(c)
					if err != nil {
						return
					}
					if r := reply(p); r != nil {
						r.Encode(c)
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// A server implementing the LOGIN extension passes the login scenario.
func TestLoginScenario(t *testing.T) {
	addr := fakeServer(t, func(p *protocol.Packet) *protocol.Packet {
		if p.Header.Command == protocol.CmdLogin {
			return protocol.NewPacket(protocol.CmdLogin, []byte("OK"))
		}
		return p
	})
	if err := runScenario("login", addr, nil, io.Discard); err != nil {
		t.Fatal(err)
	}
}

// The checker must notice wrong replies, not just missing ones.
func TestDetectsMismatch(t *testing.T) {
	cases := map[string]func(*protocol.Packet) *protocol.Packet{
		"wrong body": func(p *protocol.Packet) *protocol.Packet {
			return protocol.NewPacket(p.Header.Command, append([]byte("Server said: "), p.Body...))
		},
		"error frame": func(p *protocol.Packet) *protocol.Packet {
			return protocol.NewPacket(protocol.CmdError, []byte("unknown command: 0"))
		},
		"wrong version": func(p *protocol.Packet) *protocol.Packet {
			r := protocol.NewPacket(p.Header.Command, p.Body)
			r.Header.Version = 2
			return r
		},
	}
	for name, reply := range cases {
		t.Run(name, func(t *testing.T) {
			err := runScenario("article", fakeServer(t, reply), nil, io.Discard)
			if err == nil {
				t.Fatal("scenario passed against a wrong server")
			}
			t.Log(err)
		})
	}
}

// A server that stays silent fails by timeout rather than hanging.
func TestTimeout(t *testing.T) {
	old := scenarioTimeout
	scenarioTimeout = 300 * time.Millisecond
	defer func() { scenarioTimeout = old }()
	addr := fakeServer(t, func(*protocol.Packet) *protocol.Packet { return nil })
	err := runScenario("login", addr, nil, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "timed out") {
		t.Fatalf("err = %v, want a timeout", err)
	}
}
