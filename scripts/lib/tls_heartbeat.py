#!/usr/bin/env python3
"""A GoPro check over TLS with CPython's ssl module (OpenSSL underneath, not
rustls): handshake verified against --ca, then an empty HEARTBEAT that must
come back byte for byte and a MESSAGE that must be answered with
"Server says: " + body (the default handler, SPEC section 3).

    tls_heartbeat.py HOST PORT --ca ca.pem [--cert c.pem --key c.key]
                     [--server-name NAME] [--tls-version 1.2|1.3]

Exit status 0 with "OK ..." on stdout, 1 with the reason on stderr (refused
certificate, wrong reply, timeout), 2 for bad arguments. Frames are packed
here with struct on purpose: the point is a peer that shares no code with
the implementation under test. Standard library only.
"""

import argparse
import socket
import ssl
import struct
import sys

MAGIC = 0x474F
VERSION = 1
HEARTBEAT = 0
MESSAGE = 1
HEADER = struct.Struct(">HBBI")


class CheckFailed(Exception):
    """The server answered, but not as the protocol says."""


def frame(command: int, body: bytes) -> bytes:
    return HEADER.pack(MAGIC, VERSION, command, len(body)) + body


def read_exactly(conn: ssl.SSLSocket, n: int, what: str) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            raise CheckFailed(f"{what}: connection closed after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


def exchange(conn: ssl.SSLSocket, command: int, body: bytes, want: bytes, what: str) -> None:
    conn.sendall(frame(command, body))
    header = read_exactly(conn, HEADER.size, what)
    magic, version, got_command, length = HEADER.unpack(header)
    # The header is checked before any body byte is read: a wrong length
    # must not make us wait for (or buffer) bytes that will never come.
    if (magic, version, got_command, length) != (MAGIC, VERSION, command, len(want)):
        raise CheckFailed(
            f"{what}: header {header.hex()}, want {HEADER.pack(MAGIC, VERSION, command, len(want)).hex()}"
        )
    got = read_exactly(conn, length, what)
    if got != want:
        raise CheckFailed(f"{what}: body {got!r}, want {want!r}")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("--ca", required=True, help="PEM file of the root CAs to trust")
    p.add_argument("--cert", help="PEM client certificate (chain), for mutual TLS")
    p.add_argument("--key", help="PEM private key of --cert")
    p.add_argument(
        "--server-name",
        help="name to verify the certificate against and send as SNI (default: HOST; "
        "an IP address is checked against the IP SANs)",
    )
    p.add_argument("--tls-version", choices=["1.2", "1.3"], help="allow only this version")
    p.add_argument("--message", default="hello over TLS", help="MESSAGE body to send")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds, for each step")
    args = p.parse_args(argv)
    if (args.cert is None) != (args.key is None):
        p.error("--cert and --key go together")
    return args


def context(args: argparse.Namespace) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=args.ca)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if args.tls_version:
        v = ssl.TLSVersion.TLSv1_2 if args.tls_version == "1.2" else ssl.TLSVersion.TLSv1_3
        ctx.minimum_version = ctx.maximum_version = v
    if args.cert:
        ctx.load_cert_chain(args.cert, args.key)
    return ctx


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    where = f"{args.host}:{args.port}"
    try:
        ctx = context(args)
    except (OSError, ssl.SSLError) as e:
        print(f"FAIL: loading certificates: {e}", file=sys.stderr)
        return 1
    name = args.server_name or args.host
    try:
        with socket.create_connection((args.host, args.port), timeout=args.timeout) as raw:
            with ctx.wrap_socket(raw, server_hostname=name) as conn:
                exchange(conn, HEARTBEAT, b"", b"", "HEARTBEAT")
                body = args.message.encode()
                exchange(conn, MESSAGE, body, b"Server says: " + body, "MESSAGE")
                cipher = conn.cipher()
                suite = cipher[0] if cipher else "unknown cipher"
                print(
                    f"OK: HEARTBEAT and MESSAGE echoed by {where} over {conn.version()} ({suite})"
                )
                return 0
    except ssl.SSLCertVerificationError as e:
        print(f"FAIL: {where}: server certificate refused: {e.verify_message}", file=sys.stderr)
    except ssl.SSLError as e:
        # Also where a server's refusal of our client certificate shows up:
        # in TLS 1.3 its alert arrives on the first read after the handshake.
        print(f"FAIL: {where}: TLS error: {e}", file=sys.stderr)
    except CheckFailed as e:
        print(f"FAIL: {where}: {e}", file=sys.stderr)
    except TimeoutError:
        print(f"FAIL: {where}: no answer within {args.timeout} s", file=sys.stderr)
    except OSError as e:
        print(f"FAIL: {where}: {e}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
