package protocol

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func encode(t *testing.T, p *Packet) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := p.Encode(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// SPEC §7: HEARTBEAT with an empty body.
func TestWorkedExampleHeartbeat(t *testing.T) {
	want := unhex(t, "47 4F 01 00 00 00 00 00")
	if got := encode(t, NewPacket(CmdHeartbeat, nil)); !bytes.Equal(got, want) {
		t.Fatalf("encode: % X, want % X", got, want)
	}
	p, err := Decode(bytes.NewReader(want))
	if err != nil {
		t.Fatal(err)
	}
	if p.Header != (Header{Magic: 0x474F, Version: 1, Command: CmdHeartbeat, Length: 0}) || len(p.Body) != 0 {
		t.Fatalf("decode: %+v body %q", p.Header, p.Body)
	}
}

// SPEC §7: MESSAGE "Hello TCP World!" and the reference server's reply.
func TestWorkedExampleMessage(t *testing.T) {
	msg := "Hello TCP World!"
	want := append(unhex(t, "47 4F 01 01 00 00 00 10"), msg...)
	if got := encode(t, NewPacket(CmdMessage, []byte(msg))); !bytes.Equal(got, want) {
		t.Fatalf("encode: % X, want % X", got, want)
	}
	reply := "Server says: " + msg
	wantReply := append(unhex(t, "47 4F 01 01 00 00 00 1D"), reply...)
	if got := encode(t, NewPacket(CmdMessage, []byte(reply))); !bytes.Equal(got, wantReply) {
		t.Fatalf("encode reply: % X, want % X", got, wantReply)
	}
	p, err := Decode(bytes.NewReader(wantReply))
	if err != nil {
		t.Fatal(err)
	}
	if p.Header.Command != CmdMessage || p.Header.Length != 29 || string(p.Body) != reply {
		t.Fatalf("decode: %+v body %q", p.Header, p.Body)
	}
}

// SPEC §7: a 10 MiB body is the largest accepted.
func TestWorkedExampleLimitAccepted(t *testing.T) {
	hdr := unhex(t, "47 4F 01 01 00 A0 00 00")
	if MaxBody != 10485760 {
		t.Fatalf("MaxBody = %d, want 10485760", MaxBody)
	}
	body := make([]byte, 10485760)
	body[len(body)-1] = 0xAB
	p, err := Decode(io.MultiReader(bytes.NewReader(hdr), bytes.NewReader(body)))
	if err != nil {
		t.Fatal(err)
	}
	if p.Header.Length != 10485760 || len(p.Body) != 10485760 || p.Body[len(p.Body)-1] != 0xAB {
		t.Fatalf("decode: %+v, body %d bytes", p.Header, len(p.Body))
	}
	if got := encode(t, NewPacket(CmdMessage, body))[:HeaderSize]; !bytes.Equal(got, hdr) {
		t.Fatalf("encode header: % X, want % X", got, hdr)
	}
}

// tripwire fails the test if Decode reads past the header.
type tripwire struct{ t *testing.T }

func (w tripwire) Read([]byte) (int, error) {
	w.t.Error("Decode read body bytes of a frame it should have refused on the header")
	return 0, io.EOF
}

// SPEC §7: 10 MiB + 1 is refused on the header alone, and so is a length
// written little-endian by mistake.
func TestWorkedExampleLimitRefused(t *testing.T) {
	for _, h := range []string{"47 4F 01 01 00 A0 00 01", "47 4F 01 01 01 00 00 00"} {
		r := io.MultiReader(bytes.NewReader(unhex(t, h)), tripwire{t})
		if _, err := Decode(r); !errors.Is(err, ErrTooLarge) {
			t.Errorf("%s: err = %v, want ErrTooLarge", h, err)
		}
	}
}

// SPEC §7: bad magic is a protocol error, detected after the two magic bytes.
func TestWorkedExampleBadMagic(t *testing.T) {
	r := io.MultiReader(bytes.NewReader(unhex(t, "47 30")), tripwire{t})
	if _, err := Decode(r); !errors.Is(err, ErrBadMagic) {
		t.Fatalf("err = %v, want ErrBadMagic", err)
	}
	if _, err := Decode(bytes.NewReader(unhex(t, "47 30 01 00 00 00 00 00"))); !errors.Is(err, ErrBadMagic) {
		t.Fatalf("err = %v, want ErrBadMagic", err)
	}
}

func TestLimitIsConfigurable(t *testing.T) {
	old := MaxBody
	defer func() { MaxBody = old }()
	MaxBody = 4
	frame := encode(t, NewPacket(CmdMessage, []byte("abcd")))
	if _, err := Decode(bytes.NewReader(frame)); err != nil {
		t.Fatalf("4 bytes at limit 4: %v", err)
	}
	frame = encode(t, NewPacket(CmdMessage, []byte("abcde")))
	if _, err := Decode(bytes.NewReader(frame)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("5 bytes at limit 4: err = %v, want ErrTooLarge", err)
	}
}

// SPEC §2: EOF between frames is clean; anywhere inside a frame it is not.
func TestTruncation(t *testing.T) {
	if _, err := Decode(bytes.NewReader(nil)); err != io.EOF {
		t.Fatalf("empty stream: err = %v, want io.EOF", err)
	}
	frame := encode(t, NewPacket(CmdMessage, []byte("body")))
	for n := 1; n < len(frame); n++ {
		if _, err := Decode(bytes.NewReader(frame[:n])); err != io.ErrUnexpectedEOF {
			t.Errorf("cut after %d bytes: err = %v, want io.ErrUnexpectedEOF", n, err)
		}
	}
}

// SPEC §1: any fragmentation, down to one byte per read, and many frames in
// one buffer, decode to the same frames.
func TestFragmentation(t *testing.T) {
	var stream bytes.Buffer
	bodies := []string{"", "a", "Hello TCP World!", strings.Repeat("x", 1000), ""}
	for i, b := range bodies {
		if err := NewPacket(uint8(i%3), []byte(b)).Encode(&stream); err != nil {
			t.Fatal(err)
		}
	}
	for name, r := range map[string]io.Reader{
		"one read":      bytes.NewReader(stream.Bytes()),
		"one byte each": iotest.OneByteReader(bytes.NewReader(stream.Bytes())),
		"half each":     iotest.HalfReader(bytes.NewReader(stream.Bytes())),
	} {
		for i, b := range bodies {
			p, err := Decode(r)
			if err != nil {
				t.Fatalf("%s: frame %d: %v", name, i, err)
			}
			if p.Header.Command != uint8(i%3) || string(p.Body) != b {
				t.Fatalf("%s: frame %d: %+v %q", name, i, p.Header, p.Body)
			}
		}
		if _, err := Decode(r); err != io.EOF {
			t.Fatalf("%s: after last frame: err = %v, want io.EOF", name, err)
		}
	}
}

// The version is reported as read, never rewritten.
func TestVersionReported(t *testing.T) {
	p, err := Decode(bytes.NewReader(unhex(t, "47 4F 07 00 00 00 00 00")))
	if err != nil {
		t.Fatal(err)
	}
	if p.Header.Version != 7 {
		t.Fatalf("version %d, want 7", p.Header.Version)
	}
}

type writeRecorder struct{ writes [][]byte }

func (w *writeRecorder) Write(b []byte) (int, error) {
	w.writes = append(w.writes, append([]byte(nil), b...))
	return len(b), nil
}

// The header goes out in one write, the body in another, none for an empty
// body; Length is taken from the body whatever the caller put there.
func TestEncodeWrites(t *testing.T) {
	var w writeRecorder
	p := NewPacket(CmdMessage, []byte("hi"))
	p.Header.Length = 999
	if err := p.Encode(&w); err != nil {
		t.Fatal(err)
	}
	if len(w.writes) != 2 || len(w.writes[0]) != HeaderSize || string(w.writes[1]) != "hi" {
		t.Fatalf("writes: %q", w.writes)
	}
	if p.Header.Length != 2 || !bytes.Equal(w.writes[0], unhex(t, "47 4F 01 01 00 00 00 02")) {
		t.Fatalf("header % X, Length %d", w.writes[0], p.Header.Length)
	}
	w = writeRecorder{}
	if err := NewPacket(CmdHeartbeat, nil).Encode(&w); err != nil {
		t.Fatal(err)
	}
	if len(w.writes) != 1 {
		t.Fatalf("empty body: %d writes, want 1", len(w.writes))
	}
}
