package main

import (
	"bytes"
	"errors"
	"io"
	"log"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"gopro/interop/protocol"
)

func TestMain(m *testing.M) {
	// Connection logging would bury test output.
	log.SetOutput(io.Discard)
	os.Exit(m.Run())
}

func start(t *testing.T, tuned bool) *Server {
	t.Helper()
	s := NewServer("127.0.0.1:0", tuned, true)
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

func dial(t *testing.T, s *Server) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	t.Cleanup(func() { c.Close() })
	return c
}

func frame(t *testing.T, cmd uint8, body string) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := protocol.NewPacket(cmd, []byte(body)).Encode(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func read(t *testing.T, c net.Conn, cmd uint8, body string) {
	t.Helper()
	p, err := protocol.Decode(c)
	if err != nil {
		t.Fatalf("waiting for %s %q: %v", protocol.CommandName(cmd), body, err)
	}
	if p.Header.Command != cmd || string(p.Body) != body {
		t.Fatalf("got %s %q, want %s %q", protocol.CommandName(p.Header.Command), p.Body, protocol.CommandName(cmd), body)
	}
}

// readEOF expects the server to have closed the connection. A reset counts
// too: closing a socket with unread input (the rest of a frame refused on its
// magic) makes the kernel send RST instead of FIN.
func readEOF(t *testing.T, c net.Conn) {
	t.Helper()
	var b [1]byte
	if n, err := c.Read(b[:]); err != io.EOF && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("read %d bytes, err %v; want the server to close", n, err)
	}
}

func forBoth(t *testing.T, f func(t *testing.T, tuned bool)) {
	for _, tuned := range []bool{false, true} {
		name := "plain"
		if tuned {
			name = "tuned"
		}
		t.Run(name, func(t *testing.T) { f(t, tuned) })
	}
}

func TestReferenceBehaviour(t *testing.T) {
	forBoth(t, func(t *testing.T, tuned bool) {
		c := dial(t, start(t, tuned))
		// LOGIN gets no reply, so the first reply must be the heartbeat's.
		c.Write(frame(t, protocol.CmdLogin, "user:secret"))
		c.Write(frame(t, protocol.CmdHeartbeat, "beat"))
		read(t, c, protocol.CmdHeartbeat, "beat")
		c.Write(frame(t, protocol.CmdMessage, "Hello TCP World!"))
		read(t, c, protocol.CmdMessage, "Server says: Hello TCP World!")
		// Unknown commands close the connection in the reference.
		c.Write(frame(t, 9, "?"))
		readEOF(t, c)
	})
}

func TestBadMagicCloses(t *testing.T) {
	forBoth(t, func(t *testing.T, tuned bool) {
		c := dial(t, start(t, tuned))
		c.Write([]byte{0x47, 0x30, 1, 0, 0, 0, 0, 0})
		readEOF(t, c)
	})
}

// A complete frame followed by part of the next must still be answered: a
// client may wait for that reply before sending the rest.
func TestTunedFlushesBeforePartialFrame(t *testing.T) {
	forBoth(t, func(t *testing.T, tuned bool) {
		c := dial(t, start(t, tuned))
		next := frame(t, protocol.CmdMessage, "second")
		c.Write(append(frame(t, protocol.CmdMessage, "first"), next[:5]...))
		read(t, c, protocol.CmdMessage, "Server says: first")
		c.Write(next[5:])
		read(t, c, protocol.CmdMessage, "Server says: second")
	})
}

// Pipelined requests are all answered, in order, in both modes.
func TestPipelineOrder(t *testing.T) {
	forBoth(t, func(t *testing.T, tuned bool) {
		c := dial(t, start(t, tuned))
		var burst []byte
		for i := 0; i < 500; i++ {
			burst = append(burst, frame(t, protocol.CmdHeartbeat, string(rune('a'+i%26)))...)
		}
		go c.Write(burst)
		for i := 0; i < 500; i++ {
			read(t, c, protocol.CmdHeartbeat, string(rune('a'+i%26)))
		}
	})
}

// Stop returns promptly with idle clients connected, after answering what
// they sent, and their connections end cleanly.
func TestStop(t *testing.T) {
	forBoth(t, func(t *testing.T, tuned bool) {
		s := start(t, tuned)
		c := dial(t, s)
		c.Write(frame(t, protocol.CmdHeartbeat, ""))
		read(t, c, protocol.CmdHeartbeat, "")
		began := time.Now()
		s.Stop(5 * time.Second)
		if d := time.Since(began); d > 2*time.Second {
			t.Fatalf("Stop took %v with one idle client", d)
		}
		readEOF(t, c)
		if _, err := net.DialTimeout("tcp", s.Addr().String(), time.Second); err == nil {
			t.Fatal("still accepting after Stop")
		}
	})
}
