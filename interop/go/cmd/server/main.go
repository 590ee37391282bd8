// Command server is the article's reference GoPro server: one goroutine per
// connection, a 60 s read deadline per frame, HEARTBEAT echoed as-is, MESSAGE
// answered with "Server says: " + body, LOGIN logged without a reply, and any
// other command closing the connection. Other implementations are tested
// against it, so its observable behaviour follows the article, not the SPEC
// extensions.
//
// Once it is listening it prints exactly one line to stdout,
//
//	listening on HOST:PORT
//
// with the address actually bound, so a harness can start it on port 0 and
// learn the port. Everything else goes to stderr through package log.
//
// With -tls-cert and -tls-key it speaks the same protocol inside TLS 1.2 or
// 1.3 (package tlsconf); -tls-client-ca also requires a client certificate
// signed by one of the CAs in that file.
package main

import (
	"bufio"
	"crypto/tls"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"gopro/interop/protocol"
	"gopro/interop/tlsconf"
)

const (
	// readTimeout is the article's: a whole frame must arrive within 60 s of
	// the previous one, which is what stops idle and slow-drip connections.
	readTimeout = 60 * time.Second
	// shutdownGrace bounds how long Stop waits for handlers to finish the
	// frames they already have (SPEC §6 default).
	shutdownGrace = 10 * time.Second
)

type Server struct {
	listenAddr string
	// tuned selects the article's Phase 4: buffered reads and writes per
	// connection, replies flushed only when no further request is waiting.
	tuned bool
	// quiet drops per-message logging, which otherwise dominates the cost of
	// small frames and can fill a harness's stderr pipe.
	quiet bool
	// TLS, when set before Start, wraps the listener: every accepted
	// connection is a *tls.Conn whose handshake runs on its first read, in
	// the connection's goroutine, under the same read deadline as a frame.
	TLS *tls.Config

	ln         net.Listener
	quit       chan struct{}
	acceptDone chan struct{}
	wg         sync.WaitGroup // connection handlers

	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

func NewServer(addr string, tuned, quiet bool) *Server {
	return &Server{
		listenAddr: addr,
		tuned:      tuned,
		quiet:      quiet,
		quit:       make(chan struct{}),
		acceptDone: make(chan struct{}),
		conns:      make(map[net.Conn]struct{}),
	}
}

func (s *Server) Start() error {
	ln, err := net.Listen("tcp", s.listenAddr)
	if err != nil {
		return err
	}
	if s.TLS != nil {
		// The only change TLS makes to the article's design: the handlers
		// read and write a *tls.Conn instead of the TCP connection.
		ln = tls.NewListener(ln, s.TLS)
	}
	s.ln = ln

	// The real address, not the requested one: with port 0 only the bound
	// address tells anyone where to connect.
	if s.TLS != nil {
		log.Printf("Server listening on %s (TLS)", ln.Addr())
	} else {
		log.Printf("Server listening on %s", ln.Addr())
	}

	go s.acceptLoop()
	return nil
}

// Addr is the address the server is bound to.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

func (s *Server) stopping() bool {
	select {
	case <-s.quit:
		return true
	default:
		return false
	}
}

func (s *Server) acceptLoop() {
	// The article calls wg.Done here without a matching Add, which panics
	// when the loop exits; a separate channel says when accepting is over.
	defer close(s.acceptDone)

	for {
		conn, err := s.ln.Accept()
		if err != nil {
			if s.stopping() {
				return // Normal shutdown: Stop closed the listener.
			}
			log.Printf("Accept error: %v", err)
			// Errors such as EMFILE persist; retrying at once would spin
			// a core while nothing can be accepted anyway.
			time.Sleep(50 * time.Millisecond)
			continue
		}

		s.mu.Lock()
		s.conns[conn] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go s.handleConnection(conn)
	}
}

func (s *Server) handleConnection(conn net.Conn) {
	defer func() {
		s.mu.Lock()
		delete(s.conns, conn)
		s.mu.Unlock()
		conn.Close()
		s.wg.Done()
		log.Printf("Connection from %s closed", conn.RemoteAddr())
	}()

	log.Printf("New connection from %s", conn.RemoteAddr())

	var (
		r  io.Reader = conn
		w  io.Writer = conn
		br *bufio.Reader
		bw *bufio.Writer
	)
	if s.tuned {
		br = bufio.NewReader(conn)
		bw = bufio.NewWriter(conn)
		r, w = br, bw
		// Replies to frames handled before an error or shutdown are still
		// owed to the client. Runs before the close registered above.
		defer bw.Flush()
	}

	for {
		// Set a timeout. If client sends nothing for 60s, kill it. It is
		// set before the shutdown check so that Stop's "deadline now",
		// which comes after it closes quit, always wins over this one.
		conn.SetReadDeadline(time.Now().Add(readTimeout))
		if s.stopping() && !frameBuffered(br) {
			return
		}

		packet, err := protocol.Decode(r)
		if err != nil {
			if err == io.EOF {
				return // Client disconnected normally
			}
			if !s.stopping() {
				log.Printf("Decode error from %s: %v", conn.RemoteAddr(), err)
			}
			return
		}

		// Handle the business logic
		if err := s.processPacket(w, packet); err != nil {
			log.Printf("Processing error from %s: %v", conn.RemoteAddr(), err)
			return
		}

		// Flush when the next request is not already complete in the read
		// buffer. Holding replies while more complete requests wait batches
		// a pipelining client's replies into few writes; flushing before any
		// read that could block guarantees a client waiting for its replies
		// is never left waiting on us. (Buffered() == 0 alone is not enough:
		// a partial next frame would hold the replies until it completes.)
		if bw != nil && !frameBuffered(br) {
			if err := bw.Flush(); err != nil {
				log.Printf("Write error to %s: %v", conn.RemoteAddr(), err)
				return
			}
		}
	}
}

// frameBuffered reports whether br already holds a whole frame, so decoding
// it needs no read from the network. A frame larger than the buffer never
// qualifies, which only means an earlier flush.
func frameBuffered(br *bufio.Reader) bool {
	if br == nil {
		return false
	}
	n := br.Buffered()
	if n < protocol.HeaderSize {
		return false
	}
	hdr, err := br.Peek(protocol.HeaderSize)
	if err != nil {
		return false
	}
	length := binary.BigEndian.Uint32(hdr[4:8])
	return uint64(n) >= uint64(protocol.HeaderSize)+uint64(length)
}

func (s *Server) logf(format string, args ...any) {
	if !s.quiet && !s.tuned {
		log.Printf(format, args...)
	}
}

func (s *Server) processPacket(w io.Writer, p *protocol.Packet) error {
	switch p.Header.Command {
	case protocol.CmdHeartbeat:
		s.logf("Received Heartbeat")
		// Respond with same heartbeat: identical version, command and body.
		return p.Encode(w)

	case protocol.CmdMessage:
		s.logf("Received Message: %s", p.Body)

		// Echo back
		resp := &protocol.Packet{
			Header: protocol.Header{
				Magic:   protocol.MagicNum,
				Version: protocol.Version,
				Command: protocol.CmdMessage,
			},
			Body: append([]byte("Server says: "), p.Body...),
		}
		return resp.Encode(w)

	case protocol.CmdLogin:
		// The reference only logs a login and sends nothing back.
		s.logf("Login attempt...")
		return nil

	default:
		// The reference closes the connection on a command it does not know.
		return fmt.Errorf("unknown command: %d", p.Header.Command)
	}
}

// Stop stops accepting, lets every handler finish the frame it is working on
// and send its reply, then returns once all connections are closed or the
// grace period is over. The article only closes the listener and exits,
// cutting replies that were being written.
func (s *Server) Stop(grace time.Duration) {
	close(s.quit)
	if s.ln != nil {
		s.ln.Close()
		<-s.acceptDone
	}

	// Wake handlers blocked waiting for their next frame; one that is busy
	// with a frame finishes it and then sees the deadline or quit.
	s.mu.Lock()
	for c := range s.conns {
		c.SetReadDeadline(time.Now())
	}
	s.mu.Unlock()

	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(grace):
		s.mu.Lock()
		n := len(s.conns)
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		log.Printf("Closed %d connection(s) still busy after %v", n, grace)
		<-done
	}
	log.Println("Server stopped")
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8888", "address to listen on (port 0 picks a free port)")
	tuned := flag.Bool("tuned", false, "buffered I/O per connection, batched flushes, no per-message logging")
	quiet := flag.Bool("quiet", false, "no per-message logging")
	var tlsFlags tlsconf.Server
	flag.StringVar(&tlsFlags.Cert, "tls-cert", "", "PEM certificate (chain) of the server; turns TLS on, with -tls-key")
	flag.StringVar(&tlsFlags.Key, "tls-key", "", "PEM private key of -tls-cert")
	flag.StringVar(&tlsFlags.ClientCA, "tls-client-ca", "", "PEM CA file; clients must present a certificate signed by it")
	flag.Parse()

	tlsConfig, err := tlsFlags.Config()
	if err != nil {
		fmt.Fprintf(os.Stderr, "server: %v\n", err)
		os.Exit(2)
	}

	// Signals are caught before the address is announced, so a harness that
	// sends SIGTERM as soon as it reads the line still gets a graceful stop.
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGINT, syscall.SIGTERM)

	server := NewServer(*addr, *tuned, *quiet)
	server.TLS = tlsConfig
	if err := server.Start(); err != nil {
		log.Fatal(err)
	}
	// os.Stdout is unbuffered in Go, so the line is out as soon as this
	// returns; a harness can block on reading it.
	if _, err := fmt.Fprintf(os.Stdout, "listening on %s\n", server.Addr()); err != nil {
		log.Fatal(err)
	}

	sig := <-c
	log.Printf("Received signal %v, shutting down...", sig)
	server.Stop(shutdownGrace)
}
