"""Raw-socket GoPro clients for scripts/test-wireshark.sh.

Each mode writes frames the way the dissector must cope with them (several
frames in one segment, a header alone in its first segment, a bad magic, a
length over the limit, a GOAWAY at shutdown) and checks the server's exact
replies, so the capture holds the conversation the test expects.

Usage: python3 scripts/wireshark_clients.py MODE PORT
"""

import socket
import struct
import sys
import time

MAGIC = 0x474F
HEADER = struct.Struct(">HBBI")


def frame(command: int, body: bytes = b"", magic: int = MAGIC) -> bytes:
    return HEADER.pack(magic, 1, command, len(body)) + body


def read_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise SystemExit(f"connection closed after {len(data)} of {n} bytes")
        data += chunk
    return data


def read_frame(sock: socket.socket) -> tuple[int, bytes]:
    magic, version, command, length = HEADER.unpack(read_exact(sock, HEADER.size))
    if (magic, version) != (MAGIC, 1):
        raise SystemExit(f"bad reply header: magic {magic:#06x} version {version}")
    return command, read_exact(sock, length)


def expect(sock: socket.socket, command: int, body: bytes) -> None:
    got = read_frame(sock)
    if got != (command, body):
        raise SystemExit(f"expected {(command, body)!r}, got {got!r}")


def expect_closed(sock: socket.socket) -> None:
    rest = sock.recv(1)
    if rest:
        raise SystemExit(f"expected the server to close, got {rest!r}")


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    # Every send() leaves as its own segment: the split mode depends on it.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def pipelined(port: int) -> None:
    """Four frames in a single send(), so in a single segment."""
    with connect(port) as sock:
        sock.sendall(frame(0) + frame(2, b"alice") + frame(1, b"two") + frame(7, b"r"))
        expect(sock, 0, b"")
        expect(sock, 2, b"OK")
        expect(sock, 1, b"Server says: two")
        expect(sock, 3, b"unknown command: 7")


def split(port: int) -> None:
    """A header alone in the connection's first segment, its body in two more."""
    body = bytes(i % 251 for i in range(3000))
    data = frame(1, body)
    with connect(port) as sock:
        for start, end in ((0, 8), (8, 1500), (1500, len(data))):
            sock.sendall(data[start:end])
            # Long enough for the segment to leave before the next send().
            time.sleep(0.1)
        expect(sock, 1, b"Server says: " + body)


def bad_magic(port: int) -> None:
    with connect(port) as sock:
        sock.sendall(frame(0, magic=0x4730))
        command, reason = read_frame(sock)
        if command != 3 or not reason.startswith(b"bad magic 0x4730"):
            raise SystemExit(f"expected ERROR bad magic, got {command} {reason!r}")
        expect_closed(sock)


def too_large(port: int) -> None:
    """A header announcing 10 MiB + 1 bytes; the server refuses it unread."""
    with connect(port) as sock:
        sock.sendall(HEADER.pack(MAGIC, 1, 1, 10 * 1024 * 1024 + 1))
        command, reason = read_frame(sock)
        if command != 3 or b"10485761" not in reason:
            raise SystemExit(f"expected ERROR too large, got {command} {reason!r}")
        expect_closed(sock)


def goaway(port: int) -> None:
    """Holds a connection until the server shuts down and says GOAWAY."""
    with connect(port) as sock:
        sock.settimeout(30)
        sock.sendall(frame(0, b"hold"))
        expect(sock, 0, b"hold")
        print("ready", flush=True)
        expect(sock, 4, b"server shutting down")
        expect_closed(sock)


MODES = {
    "pipelined": pipelined,
    "split": split,
    "bad-magic": bad_magic,
    "too-large": too_large,
    "goaway": goaway,
}

if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in MODES:
        raise SystemExit(f"usage: {sys.argv[0]} {'|'.join(MODES)} PORT")
    MODES[sys.argv[1]](int(sys.argv[2]))
